"""Semantic checks of a structurally valid config: references, names, addresses, tokens.

Each problem names its key path the way structural ones do, so users get one
style of message. `check` returns these errors and the warnings of
`schemas.advice` (settings that cannot take effect), errors first.
"""

import ipaddress
from urllib.parse import urlsplit

from schemas.advice import advise
from schemas.config import (
    NotifierConfig,
    PathwatchConfig,
    ProbeRef,
    ReachabilityDetection,
    Service,
)
from schemas.names import is_subject_safe
from schemas.probekinds import KINDS
from schemas.problems import KeyPath, Problem
from schemas.subjects import SYSTEM_SERVICE

_ONE_OF = ", ".join([*(kind.ref_key for kind in KINDS), "plugin"])
_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def loopback_host(host: str) -> bool:
    """Whether the API may listen on `host` without a token."""
    return host.strip("[]") in _LOOPBACK_HOSTS


#: Keys holding a secret that a peer must present exactly.
_TOKENS: tuple[tuple[str, str], ...] = (("api", "token"), ("nats", "token"), ("grafana", "token"))


def _check_name(
    problems: list[Problem], keys: KeyPath, name: str, what: str, *, at_key: bool = False
) -> None:
    """`at_key`: the name is a mapping key (service, route), not a value."""
    if not is_subject_safe(name):
        message = f"{what} name {name!r} must match [A-Za-z0-9_-]+ (at most 64 characters)"
        problems.append(Problem(keys, message, at_key=at_key))


def _check_address(problems: list[Problem], keys: KeyPath, text: str, network: bool) -> None:
    try:
        if network:
            ipaddress.ip_network(text, strict=False)
        else:
            ipaddress.ip_address(text)
    except ValueError:
        kind = "an IP prefix" if network else "an IP address"
        problems.append(Problem(keys, f"expected {kind}, got {text!r}"))


def _check_listen(problems: list[Problem], keys: KeyPath, listen: str) -> None:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        problems.append(Problem(keys, f"expected HOST:PORT, got {listen!r}"))


def _check_tokens(problems: list[Problem], config: PathwatchConfig) -> None:
    for section, name in _TOKENS:
        token: str | None = getattr(getattr(config, section), name)
        if token is None:
            continue
        if not token.strip():
            problems.append(
                Problem(
                    (section, name),
                    "empty or only whitespace, so no client could ever"
                    " present it; remove the key for no token (the API then only listens on"
                    " loopback)",
                )
            )
        elif token != token.strip():
            problems.append(
                Problem(
                    (section, name),
                    "leading or trailing whitespace: presented tokens"
                    " are stripped, so it could never match",
                )
            )
    if not loopback_host(config.api.listen.rpartition(":")[0]) and config.api.token is None:
        problems.append(
            Problem(("api", "token"), "a token is required when the API listens off loopback")
        )


def _check_probe(
    problems: list[Problem], config: PathwatchConfig, keys: KeyPath, probe: ProbeRef
) -> None:
    refs = probe.profile_refs()
    if len(refs) + (probe.plugin is not None) != 1:
        problems.append(Problem(keys, f"expected exactly one of {_ONE_OF}"))
        return
    if not refs or config.probe_profile(probe) is not None:
        return
    kind, name = refs[0]
    defined = sorted(config.probe_profiles(kind.name))
    problems.append(
        Problem(
            (*keys, kind.ref_key),
            f"unknown {kind.ref_key} {name!r} (defined: {defined or 'none'})",
            refers=((kind.profiles_key, name),),
        )
    )


def _check_detection(
    problems: list[Problem],
    config: PathwatchConfig,
    keys: KeyPath,
    detection: ReachabilityDetection,
) -> None:
    profile = detection.reachability_profile
    if profile is not None and profile not in config.reachability_profiles:
        problems.append(
            Problem(
                (*keys, "reachability-profile"),
                f"unknown reachability-profile {profile!r}"
                f" (defined: {sorted(config.reachability_profiles) or 'none'})",
                refers=(("reachability-profiles", profile),),
            )
        )
    if detection.max_hold_down < detection.hold_down:
        problems.append(
            Problem(
                (*keys, "max-hold-down"),
                f"max-hold-down ({detection.max_hold_down:g} s) must be >= hold-down"
                f" ({detection.hold_down:g} s)",
                refers=((*keys, "hold-down"),),
            )
        )
    seen: set[str] = set()
    for index, probe in enumerate(detection.probes):
        pkeys = (*keys, "probes", index)
        _check_name(problems, (*pkeys, "name"), probe.name, "probe")
        if probe.name in seen:
            problems.append(Problem((*pkeys, "name"), f"duplicate probe name {probe.name!r}"))
        seen.add(probe.name)
        _check_probe(problems, config, pkeys, probe)


def _check_service(
    problems: list[Problem], config: PathwatchConfig, name: str, service: Service
) -> None:
    skeys: KeyPath = ("services", name)
    _check_name(problems, skeys, name, "service", at_key=True)
    if name.startswith("_"):
        problems.append(
            Problem(skeys, f"service name {name!r} must not start with '_' (reserved)", at_key=True)
        )
    for index, prefix in enumerate(service.address):
        _check_address(problems, (*skeys, "address", index), prefix, True)
    for route_name, route in service.service_routes.items():
        rkeys = (*skeys, "service-routes", route_name)
        _check_name(problems, rkeys, route_name, "service-route", at_key=True)
        _check_name(problems, (*rkeys, "next-hop", "node"), route.next_hop.node, "node")
        for key, address in (
            ("gateway-ip", route.next_hop.gateway_ip),
            ("source-address", route.next_hop.source_address),
        ):
            if address is not None:
                _check_address(problems, (*rkeys, "next-hop", key), address, False)
        _check_detection(
            problems, config, (*rkeys, "reachability-detection"), route.reachability_detection
        )


def _check_reply_timeouts(problems: list[Problem], config: PathwatchConfig) -> None:
    for kind in KINDS:
        for name, profile in config.probe_profiles(kind.name).items():
            bounds = profile.reply_timeout
            if bounds.max is not None and bounds.min > bounds.max:
                keys = (kind.profiles_key, name, "reply-timeout")
                problems.append(
                    Problem(
                        (*keys, "min"),
                        f"reply-timeout min ({bounds.min:g} s) must be <= max ({bounds.max:g} s)",
                        refers=((*keys, "max"),),
                    )
                )


def _check_notifier(
    problems: list[Problem], config: PathwatchConfig, name: str, notifier: NotifierConfig
) -> None:
    keys: KeyPath = ("notifiers", name)
    _check_name(problems, keys, name, "notifier", at_key=True)
    url = urlsplit(notifier.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        problems.append(Problem((*keys, "url"), f"expected an http(s) URL, got {notifier.url!r}"))
    for index, service in enumerate(notifier.services):
        if service != SYSTEM_SERVICE and service not in config.services:
            problems.append(
                Problem(
                    (*keys, "services", index),
                    f"unknown service {service!r} (defined: {sorted(config.services) or 'none'},"
                    f" and {SYSTEM_SERVICE} for alarms about pathwatch)",
                )
            )
    if notifier.retry.max < notifier.retry.initial:
        problems.append(Problem((*keys, "retry", "max"), "retry.max must be >= retry.initial"))
    secrets = [k for k in ("secret", "secret-file") if getattr(notifier, k.replace("-", "_"))]
    if notifier.kind == "webhook" and len(secrets) != 1:
        problems.append(Problem(keys, "a webhook needs exactly one of secret, secret-file"))
    if notifier.kind == "webhook" and notifier.secret is not None and not notifier.secret.strip():
        problems.append(Problem((*keys, "secret"), "empty or only whitespace"))
    if notifier.kind == "alertmanager":
        for key in secrets:
            problems.append(Problem((*keys, key), f"{key} is only for kind webhook"))
    if notifier.kind == "webhook" and notifier.resend_interval is not None:
        problems.append(
            Problem((*keys, "resend-interval"), "resend-interval is only for kind alertmanager")
        )


def errors(config: PathwatchConfig) -> list[Problem]:
    """Every semantic error of `config`."""
    problems: list[Problem] = []
    _check_listen(problems, ("api", "listen"), config.api.listen)
    _check_listen(problems, ("metrics", "listen"), config.metrics.listen)
    _check_tokens(problems, config)
    _check_reply_timeouts(problems, config)
    for kind in KINDS:
        for name, profile in config.probe_profiles(kind.name).items():
            for index, address in enumerate(getattr(profile, "probe_address", ())):
                keys = (kind.profiles_key, name, "probe-address", index)
                _check_address(problems, keys, address, False)
            for key, message in profile.problems():
                problems.append(Problem((kind.profiles_key, name, key), message))
    for name, service in config.services.items():
        _check_service(problems, config, name, service)
    for name, notifier in config.notifiers.items():
        _check_notifier(problems, config, name, notifier)
    return problems


def check(config: PathwatchConfig) -> list[Problem]:
    """All semantic errors and warnings of `config`; errors first."""
    return errors(config) + advise(config)
