"""What an agent probes: the routes of its node, their probes, per class and path.

`build_plan(config, node, engine)` turns the config into `RoutePlan`s: only
routes whose next-hop node is `node` (every route when `node` is None), not
those with `reachability-detection` disabled or `probe-type: disabled`. Each
probe becomes one `Target` per (probe address, traffic class of its
profile), carrying that class's DSCP and pinned to the route's next hop
(interface and / or source address). Plugin probes are resolved through the
`pathwatch.probes` entry points here, so an unknown plugin fails at start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.probe.base import PluginProfile, ProbeFunc, Target
from agents.probe.icmp_engine import IcmpEngine
from agents.probe.link import LinkWatch
from agents.probe.registry import EXCHANGES, PREFLIGHTS, resolve
from agents.probe.rtt import TimeoutBounds
from agents.probe.watch import ConfirmSettings
from schemas.config import PathwatchConfig, ProbeRef, ServiceRoute, SlaMetrics
from schemas.fastdetect import agent_confirms, confirm_interval, reply_timeout_bounds
from schemas.wire import TRAFFIC_CLASSES, TrafficClass


@dataclass(frozen=True)
class PlannedProbe:
    """One probe of one route with every target it runs against each round."""

    name: str
    kind: str
    func: ProbeFunc
    profile: Any
    interval: float
    duration: float
    targets: list[Target]
    #: the SLA each target must meet (kinds judged per address); None: none
    sla: SlaMetrics | None = None
    #: confirm mode (suspicion re-probing) of its targets; None: off for this probe
    confirm: ConfirmSettings | None = None

    def deadline_after(self, start: float) -> float:
        """When a run started at `start` must be over (attempts + their timeouts)."""
        return start + 2 * self.duration + 0.5


@dataclass(frozen=True)
class RoutePlan:
    """The probes of one service route on this agent."""

    service: str
    route: str
    node: str
    probes: list[PlannedProbe] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.service}.{self.route}"


def _plugin_profile(ref: ProbeRef) -> PluginProfile:
    options = dict(ref.options)
    classes: list[TrafficClass] = []
    for text in options.get("traffic-classes", "best-effort").split(","):
        name = text.strip()
        if name not in TRAFFIC_CLASSES:
            raise ValueError(f"probe {ref.name!r}: unknown traffic class {name!r}")
        classes.append(name)
    addresses = [a.strip() for a in options.get("probe-address", "").split(",") if a.strip()]
    return PluginProfile(
        name=ref.plugin or ref.name,
        options=options,
        probe_interval=float(options.get("probe-interval", 10)),
        probe_duration=float(options.get("probe-duration", 1)),
        number_of_attempts=int(options.get("number-of-attempts", 1)),
        traffic_classes=classes,
        probe_address=addresses or [""],
        port=int(options["port"]) if "port" in options else None,
    )


def _confirm_settings(kind: str, profile: Any, route: ServiceRoute) -> ConfirmSettings | None:
    """How the agent confirms this probe's targets (schemas.fastdetect), or None."""
    if kind not in EXCHANGES or not agent_confirms(kind, profile, route):
        return None
    floor, ceiling = reply_timeout_bounds(profile)
    return ConfirmSettings(
        threshold=route.reachability_detection.consecutive_failures,
        interval=confirm_interval(profile),
        bounds=TimeoutBounds(floor, ceiling),
        extra=float(getattr(profile, "hold_open", 0)) / 1000,
    )


def _planned_probe(
    config: PathwatchConfig, route: ServiceRoute, ref: ProbeRef, engine: IcmpEngine | None
) -> PlannedProbe:
    found = ref.profile_ref()
    profile: Any
    if found is None:
        if ref.plugin is None:
            raise ValueError(f"probe {ref.name!r} names no profile and no plugin")
        kind = ref.plugin
        profile = _plugin_profile(ref)
    else:
        kind = found[0]
        profile = config.probe_profile(ref)
        if profile is None:
            raise ValueError(f"probe {ref.name!r}: unknown {kind}-probe-profile {found[1]!r}")
    func = resolve(kind)
    next_hop = route.next_hop
    targets = [
        Target(
            address=address,
            probe=ref.name,
            traffic_class=traffic_class,
            dscp=config.dscp(traffic_class),
            port=getattr(profile, "port", None),
            interface=next_hop.interface,
            source_address=next_hop.source_address,
            icmp=engine,
        )
        for traffic_class in profile.traffic_classes
        for address in profile.destinations()
    ]
    return PlannedProbe(
        name=ref.name,
        kind=kind,
        func=func,
        profile=profile,
        interval=float(profile.probe_interval),
        duration=float(profile.probe_duration),
        targets=targets,
        sla=None if found is None else profile.sla(),
        confirm=None if found is None else _confirm_settings(kind, profile, route),
    )


def build_plan(
    config: PathwatchConfig, node: str | None, engine: IcmpEngine | None
) -> list[RoutePlan]:
    """The routes this agent probes and how (raises on unknown plugins)."""
    plans: list[RoutePlan] = []
    for service_name, route_name, _service, route in config.routes():
        if node is not None and route.next_hop.node != node:
            continue
        detection = route.reachability_detection
        probes: list[PlannedProbe] = []
        if detection.enabled and detection.probe_type != "disabled":
            probes = [_planned_probe(config, route, ref, engine) for ref in detection.probes]
        plans.append(RoutePlan(service_name, route_name, route.next_hop.node, probes))
    return plans


def link_watches(config: PathwatchConfig, node: str | None) -> list[LinkWatch]:
    """Next hops (interface / gateway) of this agent's routes, for the link watcher."""
    watches: list[LinkWatch] = []
    for service_name, route_name, _service, route in config.routes():
        if node is not None and route.next_hop.node != node:
            continue
        if not route.reachability_detection.enabled:
            continue
        next_hop = route.next_hop
        if next_hop.interface or next_hop.gateway_ip:
            watches.append(
                LinkWatch(service_name, route_name, next_hop.interface, next_hop.gateway_ip)
            )
    return watches


def preflight(plans: list[RoutePlan]) -> None:
    """Run each probe kind's start-up check on its targets (raises when one cannot be
    probed, e.g. IcmpUnavailable)."""
    for plan in plans:
        for probe in plan.probes:
            check = PREFLIGHTS.get(probe.kind)
            if check is not None and probe.targets:
                check(probe.targets)
