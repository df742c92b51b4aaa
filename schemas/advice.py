"""Warnings about settings that cannot take effect as written (config is still accepted).

Bouncing risk, unused profiles, a probe class with no threshold entry in the
route's reachability profile, thresholds no route measures, settings of a
disabled detection or of another classifier, address families a probe cannot
mix, SLA lanes that can never gather `min-samples`, keys not implemented yet.
"""

import ipaddress
import math
from collections.abc import Iterable

from schemas.config import (
    ClassThresholds,
    NatsConfig,
    PassiveConfig,
    PathwatchConfig,
    ReachabilityDetection,
    ServiceRoute,
    TimeToEstablishment,
)
from schemas.probekinds import BY_NAME, KINDS, REACHABILITY_PROTOCOLS, HttpProbeProfile
from schemas.problems import KeyPath, Problem

_DEFAULT_TTE = TimeToEstablishment()
_DEFAULT_PASSIVE = PassiveConfig()
_DEFAULT_NATS = NatsConfig()
_DEFAULTS = ClassThresholds()
_DEFAULTS_TEXT = (
    f"error {_DEFAULTS.acceptable_error_threshold:g} %, time-to-establishment max"
    f" {_DEFAULT_TTE.max:g} ms / mean {_DEFAULT_TTE.mean:g} ms"
)


def _warn(keys: KeyPath, message: str, *refers: KeyPath) -> Problem:
    return Problem(keys, message, "warning", refers=refers)


def _family(address: str) -> int | None:
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        return None


def _measured(config: PathwatchConfig, route: ServiceRoute) -> set[tuple[str, str]]:
    """(protocol, class) pairs the active probes of `route` measure."""
    detection = route.reachability_detection
    if not detection.enabled or detection.probe_type == "disabled":
        return set()
    pairs: set[tuple[str, str]] = set()
    for probe in detection.probes:
        found = probe.profile_ref()
        profile = config.probe_profile(probe)
        kind = BY_NAME[found[0]] if found is not None else None
        if kind is not None and profile is not None and kind.reachability:
            pairs.update(
                (kind.protocol, traffic_class) for traffic_class in profile.traffic_classes
            )
    return pairs


def _probe_advice(
    config: PathwatchConfig, route: ServiceRoute, keys: KeyPath, index: int
) -> list[Problem]:
    detection = route.reachability_detection
    probe = detection.probes[index]
    found = probe.profile_ref()
    profile = config.probe_profile(probe)
    if found is None or profile is None:
        return []
    kind = BY_NAME[found[0]]
    name = found[1]
    pkeys = (*keys, "probes", index)
    profile_keys: KeyPath = (kind.profiles_key, name)
    found_problems: list[Problem] = []
    window = detection.detection_window
    if profile.probe_interval + profile.probe_duration >= window:
        found_problems.append(
            _warn(
                pkeys,
                f"probe-interval ({profile.probe_interval:g} s) + probe-duration"
                f" ({profile.probe_duration:g} s) is not below detection-window"
                f" ({window:g} s): the path would bounce",
                profile_keys,
            )
        )
    if kind.per_address_sla:
        most = profile.number_of_attempts * math.ceil(window / profile.probe_interval)
        if most < detection.min_samples:
            found_problems.append(
                _warn(
                    (*keys, "min-samples"),
                    f"probe {probe.name!r} gathers at most {most} samples per address in a"
                    f" {window:g} s window, fewer than min-samples ({detection.min_samples}):"
                    " its SLA is never judged",
                    profile_keys,
                )
            )
    reachability = detection.reachability_profile
    thresholds = config.reachability_profiles.get(reachability or "")
    if kind.reachability and thresholds is not None:
        protocol = kind.protocol
        table = thresholds.table(protocol)
        for traffic_class in profile.traffic_classes:
            if traffic_class not in table:
                found_problems.append(
                    _warn(
                        pkeys,
                        f"probe {probe.name!r} measures {protocol}/{traffic_class}, which"
                        f" reachability-profile {reachability!r} has no entry for"
                        f" ({protocol}.{traffic_class}): judged against the defaults"
                        f" ({_DEFAULTS_TEXT})",
                        ("reachability-profiles", reachability or ""),
                        profile_keys,
                    )
                )
    source = route.next_hop.source_address
    source_family = _family(source) if source is not None else None
    for address in profile.destinations():
        family = _family(address)
        if source_family is not None and family is not None and family != source_family:
            found_problems.append(
                _warn(
                    pkeys,
                    f"probe {probe.name!r} sends to {address} (IPv{family}) from"
                    f" next-hop.source-address {source} (IPv{source_family}): it cannot be sent",
                    profile_keys,
                )
            )
    return found_problems


def _detection_advice(config: PathwatchConfig, route: ServiceRoute, keys: KeyPath) -> list[Problem]:
    detection: ReachabilityDetection = route.reachability_detection
    if not detection.enabled:
        if detection.probes or detection.reachability_profile is not None:
            return [
                _warn(
                    (*keys, "enabled"),
                    "reachability-detection is disabled: its probes and reachability-profile"
                    " take no effect",
                )
            ]
        return []
    if detection.probe_type == "disabled":
        if detection.probes:
            return [
                _warn(
                    (*keys, "probe-type"),
                    f"probe-type is disabled: the {len(detection.probes)} probes listed are"
                    " not run",
                )
            ]
        return []
    found: list[Problem] = []
    for index in range(len(detection.probes)):
        found += _probe_advice(config, route, keys, index)
    return found


def _tte_advice(config: PathwatchConfig) -> list[Problem]:
    found: list[Problem] = []
    for name, profile in config.reachability_profiles.items():
        for protocol in REACHABILITY_PROTOCOLS:
            for traffic_class, entry in profile.table(protocol).items():
                keys = ("reachability-profiles", name, protocol, traffic_class)
                tte = entry.time_to_establishment
                tkeys = (*keys, "time-to-establishment")
                if tte.enabled and tte.max == 0 and tte.mean == 0:
                    found.append(
                        _warn(
                            tkeys,
                            "time-to-establishment is enabled but max and mean are 0:"
                            " it checks nothing",
                        )
                    )
                if not tte.enabled and (tte.max, tte.mean) != (_DEFAULT_TTE.max, _DEFAULT_TTE.mean):
                    found.append(
                        _warn(
                            tkeys,
                            "time-to-establishment max / mean are set but enabled is"
                            " false: they take no effect",
                        )
                    )
    return found


def _unmeasured_advice(config: PathwatchConfig) -> list[Problem]:
    """Threshold entries of a used profile that no route judged against it measures."""
    measured: dict[str, set[tuple[str, str]]] = {}
    for _, _, _, route in config.routes():
        name = route.reachability_detection.reachability_profile
        if name is not None:
            measured.setdefault(name, set()).update(_measured(config, route))
    passive = config.passive
    learned = set(passive.protocols) if passive.enabled else set()
    found: list[Problem] = []
    for name, pairs in measured.items():
        profile = config.reachability_profiles.get(name)
        if profile is None:
            continue
        for protocol in REACHABILITY_PROTOCOLS:
            for traffic_class in profile.table(protocol):
                if (protocol, traffic_class) not in pairs and protocol not in learned:
                    found.append(
                        _warn(
                            ("reachability-profiles", name, protocol, traffic_class),
                            f"no route judged against reachability-profile {name!r} measures"
                            f" {protocol}/{traffic_class} (no such probe, no passive learning):"
                            " these thresholds take no effect",
                        )
                    )
    return found


def _unused_advice(config: PathwatchConfig) -> list[Problem]:
    used: set[tuple[str, str]] = set()
    for _, _, _, route in config.routes():
        detection = route.reachability_detection
        if detection.reachability_profile is not None:
            used.add(("reachability", detection.reachability_profile))
        used.update(ref for probe in detection.probes if (ref := probe.profile_ref()))
    found: list[Problem] = []
    tables: list[tuple[str, str, Iterable[str]]] = [
        ("reachability", "reachability-profiles", config.reachability_profiles)
    ]
    tables += [(k.name, k.profiles_key, config.probe_profiles(k.name)) for k in KINDS]
    for kind, table, names in tables:
        for name in names:
            if (kind, name) not in used:
                found.append(_warn((table, name), f"{table.removesuffix('s')} is unused"))
    return found


def _section_advice(config: PathwatchConfig) -> list[Problem]:
    """Keys that only matter under another setting of their section."""
    found: list[Problem] = []
    passive = config.passive
    if passive.port_classes and passive.classifier != "port":
        found.append(
            _warn(
                ("passive", "port-classes"),
                f"port-classes is only read by classifier port (classifier: {passive.classifier})",
            )
        )
    if passive.mark_mask != _DEFAULT_PASSIVE.mark_mask and passive.classifier != "mark":
        found.append(
            _warn(
                ("passive", "mark-mask"),
                f"mark-mask is only read by classifier mark (classifier: {passive.classifier})",
            )
        )
    if config.nats.url != "embedded" and config.nats.store_dir != _DEFAULT_NATS.store_dir:
        found.append(
            _warn(
                ("nats", "store-dir"),
                "store-dir is only used by the embedded nats-server (url: embedded)",
            )
        )
    for name, profile in config.probe_profiles("http").items():
        if isinstance(profile, HttpProbeProfile) and profile.up_delay_timer:
            found.append(
                _warn(
                    ("http-probe-profiles", name, "up-delay-timer"),
                    "up-delay-timer is not implemented yet: it takes no effect",
                )
            )
    return found


#: Alertmanager's default `resolve_timeout`: an alert not sent again within it resolves.
ALERTMANAGER_RESOLVE_TIMEOUT_S = 300.0


def _notifier_advice(config: PathwatchConfig) -> list[Problem]:
    found: list[Problem] = []
    for name, notifier in config.notifiers.items():
        resend = notifier.resend_interval
        if notifier.kind == "alertmanager" and resend and resend >= ALERTMANAGER_RESOLVE_TIMEOUT_S:
            found.append(
                _warn(
                    ("notifiers", name, "resend-interval"),
                    f"resend-interval {resend:g} s is not below Alertmanager's default"
                    f" resolve_timeout ({ALERTMANAGER_RESOLVE_TIMEOUT_S:g} s): active alarms"
                    " may resolve between re-sends",
                )
            )
    return found


def advise(config: PathwatchConfig) -> list[Problem]:
    """Every warning about `config`."""
    found: list[Problem] = []
    for service_name, route_name, _, route in config.routes():
        keys = ("services", service_name, "service-routes", route_name, "reachability-detection")
        found += _detection_advice(config, route, keys)
    return (
        found
        + _unused_advice(config)
        + _unmeasured_advice(config)
        + _tte_advice(config)
        + _section_advice(config)
        + _notifier_advice(config)
    )
