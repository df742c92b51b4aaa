"""Semantic checks of a structurally valid config: references, names, warnings.

Each problem names its key path (`$.services.web.service-routes.r1...`) the way
msgspec names structural ones, so users get one style of message.
"""

import ipaddress
from dataclasses import dataclass

from schemas.config import PathwatchConfig
from schemas.names import is_subject_safe


@dataclass(frozen=True)
class Problem:
    """One finding: `path` is the key path, `message` what was expected."""

    path: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.message} - at `{self.path}`"


def _check_name(problems: list[Problem], path: str, name: str, what: str) -> None:
    if not is_subject_safe(name):
        problems.append(
            Problem(path, f"{what} name {name!r} must match [A-Za-z0-9_-]+ (at most 64 characters)")
        )


def _check_address(problems: list[Problem], path: str, text: str, network: bool) -> None:
    try:
        if network:
            ipaddress.ip_network(text, strict=False)
        else:
            ipaddress.ip_address(text)
    except ValueError:
        kind = "an IP prefix" if network else "an IP address"
        problems.append(Problem(path, f"expected {kind}, got {text!r}"))


def _check_listen(problems: list[Problem], path: str, listen: str) -> None:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        problems.append(Problem(path, f"expected HOST:PORT, got {listen!r}"))


def check(config: PathwatchConfig) -> list[Problem]:
    """All semantic errors and warnings of `config`; errors first."""
    problems: list[Problem] = []
    _check_listen(problems, "$.api.listen", config.api.listen)
    _check_listen(problems, "$.metrics.listen", config.metrics.listen)
    api_host = config.api.listen.rpartition(":")[0].strip("[]")
    if api_host not in ("127.0.0.1", "::1", "localhost") and not config.api.token:
        problems.append(
            Problem("$.api.token", "a token is required when the API listens off loopback")
        )

    for kind in ("icmp", "tcp", "tls", "udp"):
        table = getattr(config, f"{kind}_probe_profiles")
        for name, profile in table.items():
            for i, address in enumerate(profile.probe_address):
                _check_address(
                    problems, f"$.{kind}-probe-profiles.{name}.probe-address[{i}]", address, False
                )

    used_reachability: set[str] = set()
    used_probe: set[tuple[str, str]] = set()
    nodes_routes: dict[str, list[str]] = {}
    for service_name, service in config.services.items():
        spath = f"$.services.{service_name}"
        _check_name(problems, spath, service_name, "service")
        if service_name.startswith("_"):
            problems.append(
                Problem(spath, f"service name {service_name!r} must not start with '_' (reserved)")
            )
        for i, prefix in enumerate(service.address):
            _check_address(problems, f"{spath}.address[{i}]", prefix, True)
        for route_name, route in service.service_routes.items():
            rpath = f"{spath}.service-routes.{route_name}"
            _check_name(problems, rpath, route_name, "service-route")
            _check_name(problems, f"{rpath}.next-hop.node", route.next_hop.node, "node")
            nodes_routes.setdefault(route.next_hop.node, []).append(f"{service_name}.{route_name}")
            if route.next_hop.gateway_ip is not None:
                _check_address(
                    problems, f"{rpath}.next-hop.gateway-ip", route.next_hop.gateway_ip, False
                )
            if route.next_hop.source_address is not None:
                _check_address(
                    problems,
                    f"{rpath}.next-hop.source-address",
                    route.next_hop.source_address,
                    False,
                )
            detection = route.reachability_detection
            dpath = f"{rpath}.reachability-detection"
            if detection.reachability_profile is not None:
                used_reachability.add(detection.reachability_profile)
                if detection.reachability_profile not in config.reachability_profiles:
                    problems.append(
                        Problem(
                            f"{dpath}.reachability-profile",
                            f"unknown reachability-profile {detection.reachability_profile!r}"
                            f" (defined: {sorted(config.reachability_profiles) or 'none'})",
                        )
                    )
            if detection.max_hold_down < detection.hold_down:
                problems.append(
                    Problem(f"{dpath}.max-hold-down", "max-hold-down must be >= hold-down")
                )
            seen_probes: set[str] = set()
            for i, probe in enumerate(detection.probes):
                ppath = f"{dpath}.probes[{i}]"
                _check_name(problems, f"{ppath}.name", probe.name, "probe")
                if probe.name in seen_probes:
                    problems.append(
                        Problem(f"{ppath}.name", f"duplicate probe name {probe.name!r}")
                    )
                seen_probes.add(probe.name)
                refs = [
                    kind
                    for kind in ("icmp", "tcp", "tls", "udp", "http")
                    if getattr(probe, f"{kind}_probe_profile") is not None
                ]
                if len(refs) + (probe.plugin is not None) != 1:
                    problems.append(
                        Problem(
                            ppath,
                            "expected exactly one of icmp-probe-profile, tcp-probe-profile,"
                            " tls-probe-profile, udp-probe-profile, http-probe-profile, plugin",
                        )
                    )
                    continue
                found = probe.profile_ref()
                if found is None:
                    continue
                kind, profile_name = found
                used_probe.add((kind, profile_name))
                profile = config.probe_profile(probe)
                if profile is None:
                    defined = sorted(getattr(config, f"{kind}_probe_profiles"))
                    problems.append(
                        Problem(
                            f"{ppath}.{kind}-probe-profile",
                            f"unknown {kind}-probe-profile {profile_name!r}"
                            f" (defined: {defined or 'none'})",
                        )
                    )
                    continue
                if profile.probe_interval + profile.probe_duration >= detection.detection_window:
                    problems.append(
                        Problem(
                            ppath,
                            f"probe-interval ({profile.probe_interval:g} s) + probe-duration"
                            f" ({profile.probe_duration:g} s) is not below detection-window"
                            f" ({detection.detection_window:g} s): the path would bounce",
                            "warning",
                        )
                    )

    for name in config.reachability_profiles:
        if name not in used_reachability:
            problems.append(
                Problem(
                    f"$.reachability-profiles.{name}", "reachability-profile is unused", "warning"
                )
            )
    for kind in ("icmp", "tcp", "tls", "udp", "http"):
        for name in getattr(config, f"{kind}_probe_profiles"):
            if (kind, name) not in used_probe:
                problems.append(
                    Problem(
                        f"$.{kind}-probe-profiles.{name}",
                        f"{kind}-probe-profile is unused",
                        "warning",
                    )
                )
    problems.sort(key=lambda p: p.severity != "error")
    return problems
