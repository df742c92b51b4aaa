"""What the enforcer needs to know about one service route, read once from config."""

from dataclasses import dataclass, field
from functools import cached_property

from enforcer.holddown import HoldDownPolicy, RecoveryEvidence
from schemas import probekinds
from schemas.config import ClassThresholds, PathwatchConfig, SlaMetrics
from schemas.wire import Protocol, TrafficClass

#: Protocols judged against reachability profiles (`schemas.probekinds`).
REACHABILITY_PROTOCOLS: frozenset[str] = frozenset(probekinds.REACHABILITY_PROTOCOLS)
_DEFAULT_THRESHOLDS = ClassThresholds()


@dataclass(frozen=True)
class ProbeSpec:
    """One named probe of a route; `sla` is set for kinds judged per address (enforced)."""

    name: str
    kind: str
    sla: SlaMetrics | None
    destinations: tuple[str, ...] = ()

    @property
    def enforced(self) -> bool:
        return self.sla is not None or self.kind == "plugin"


@dataclass(frozen=True)
class RouteSpec:
    """A service route's next hop, detection settings and thresholds."""

    service: str
    route: str
    node: str
    interface: str
    gateway: str | None
    cost: int
    prefixes: tuple[str, ...]
    enabled: bool
    enforcement: bool
    window: float
    hold_down: HoldDownPolicy
    min_samples: int
    probe_type: str
    best_effort_allowed: bool
    probes: dict[str, ProbeSpec] = field(default_factory=dict)
    thresholds: dict[tuple[str, str], ClassThresholds] = field(default_factory=dict)

    @cached_property
    def key(self) -> str:
        """`<service>.<route>`: the route's key in KV and in the engine's tables."""
        return f"{self.service}.{self.route}"

    def thresholds_for(self, protocol: Protocol, traffic_class: TrafficClass) -> ClassThresholds:
        """Thresholds of (protocol, class): the profile's entry, else the router defaults."""
        return self.thresholds.get((protocol, traffic_class), _DEFAULT_THRESHOLDS)


def recovery_evidence(spec: RouteSpec) -> RecoveryEvidence:
    """The evidence that ends a hold-down of `spec`'s route: probe-verified when it has
    active probes (ones that send packets) and `recovery-probes` above 0, else organic."""
    active = spec.enabled and spec.probe_type != "disabled"
    if not active or not any(probe.kind != "plugin" for probe in spec.probes.values()):
        return RecoveryEvidence()
    enforced = frozenset(name for name, probe in spec.probes.items() if probe.sla is not None)
    return RecoveryEvidence(spec.hold_down.recovery_probes, enforced, REACHABILITY_PROTOCOLS)


def route_specs(config: PathwatchConfig) -> list[RouteSpec]:
    """Every route of the config as a RouteSpec, in config order."""
    specs: list[RouteSpec] = []
    for service_name, route_name, service, route in config.routes():
        detection = route.reachability_detection
        thresholds: dict[tuple[str, str], ClassThresholds] = {}
        profile = (
            config.reachability_profiles.get(detection.reachability_profile)
            if detection.reachability_profile
            else None
        )
        if profile is not None:
            for protocol in REACHABILITY_PROTOCOLS:
                for traffic_class, entry in profile.table(protocol).items():
                    thresholds[(protocol, traffic_class)] = entry
        probes: dict[str, ProbeSpec] = {}
        for ref in detection.probes:
            found = ref.profile_ref()
            if found is None:
                probes[ref.name] = ProbeSpec(ref.name, "plugin", None)
                continue
            kind, _ = found
            probe_profile = config.probe_profile(ref)
            sla = None if probe_profile is None else probe_profile.sla()
            destinations = () if probe_profile is None else tuple(probe_profile.destinations())
            probes[ref.name] = ProbeSpec(ref.name, kind, sla, destinations)
        specs.append(
            RouteSpec(
                service=service_name,
                route=route_name,
                node=route.next_hop.node,
                interface=route.next_hop.interface or "",
                gateway=route.next_hop.gateway_ip,
                cost=route.cost,
                prefixes=tuple(service.address),
                enabled=detection.enabled,
                enforcement=detection.enforcement,
                window=detection.detection_window,
                hold_down=HoldDownPolicy(
                    detection.hold_down, detection.max_hold_down, detection.recovery_probes
                ),
                min_samples=detection.min_samples,
                probe_type=detection.probe_type,
                best_effort_allowed=service.service_policy.best_effort,
                probes=probes,
                thresholds=thresholds,
            )
        )
    return specs
