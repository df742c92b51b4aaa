"""The configuration model: kebab-case keys, router-CLI defaults and ranges.

Structural checks (types, ranges, unknown keys) come from msgspec; semantic
checks (references, duplicates, warnings) live in `schemas.validate`.
Units follow the router CLI: seconds for windows, intervals and hold-down,
milliseconds for latencies, percent for thresholds.
"""

from typing import Annotated, Literal

from msgspec import Meta, Struct, field

from schemas.notifier_config import NotifierConfig
from schemas.wire import TrafficClass


class _Cfg(Struct, frozen=True, kw_only=True, rename="kebab", forbid_unknown_fields=True):
    """Base of config sections: kebab-case keys, unknown keys refused."""


Pct = Annotated[float, Meta(ge=0, le=100)]
Seconds = Annotated[float, Meta(gt=0, le=86400)]
Millis = Annotated[float, Meta(ge=0, le=600000)]
Port = Annotated[int, Meta(ge=1, le=65535)]
Dscp = Annotated[int, Meta(ge=0, le=63)]
#: Router ranges for ICMP and HTTP probe profiles.
ProbeInterval = Annotated[float, Meta(ge=1, le=3600)]
Attempts = Annotated[int, Meta(ge=1, le=20)]
ProbeDuration = Annotated[float, Meta(ge=1, le=10)]
#: TCP, TLS and UDP probes have no router counterpart and may run sub-second.
FastProbeInterval = Annotated[float, Meta(ge=0.05, le=3600)]
FastProbeDuration = Annotated[float, Meta(ge=0.01, le=10)]


# --- infrastructure -------------------------------------------------------


class NatsConfig(_Cfg, frozen=True, kw_only=True):
    """`url: embedded` runs an embedded nats-server; otherwise a comma-separated server list."""

    url: str = "embedded"
    credentials: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    store_dir: str = ".pathwatch/nats"
    replicas: Annotated[int, Meta(ge=1, le=5)] = 1


class ApiConfig(_Cfg, frozen=True, kw_only=True):
    """REST API; a token is required when it listens off loopback."""

    listen: str = "127.0.0.1:8640"
    token: str | None = None


class RetentionConfig(_Cfg, frozen=True, kw_only=True):
    """How long history is kept, like the router's rollups (seconds)."""

    raw: Seconds = 3600
    five_minute: Seconds = 86400
    hourly: Seconds = 86400 * 180


class StoreConfig(_Cfg, frozen=True, kw_only=True):
    path: str = "pathwatch.db"
    retention: RetentionConfig = field(default_factory=RetentionConfig)


class MetricsConfig(_Cfg, frozen=True, kw_only=True):
    """Prometheus exporter of the aggregator (`/metrics`)."""

    listen: str = "127.0.0.1:9640"
    per_destination: bool = False


class AggregatorConfig(_Cfg, frozen=True, kw_only=True):
    """`allowed-lateness` null means the smaller of 1 s and half the window."""

    allowed_lateness: Annotated[float, Meta(ge=0, le=60)] | None = None
    max_future_skew: Annotated[float, Meta(gt=0, le=3600)] = 5.0
    skew_alarm: Annotated[float, Meta(gt=0, le=3600)] = 1.0


class EnforcerConfig(_Cfg, frozen=True, kw_only=True):
    lease_ttl: Annotated[float, Meta(ge=1, le=300)] = 5.0
    agent_silence_windows: Annotated[int, Meta(ge=1, le=100)] = 3


class RouterConfig(_Cfg, frozen=True, kw_only=True):
    """Route actuator: `ecmp` spreads over in-service next hops by cost, `best` uses one."""

    mode: Literal["ecmp", "best"] = "ecmp"
    table: Annotated[int, Meta(ge=1, le=4294967295)] = 254
    protocol: Annotated[int, Meta(ge=1, le=255)] = 199
    dry_run: bool = False
    #: Route metric (priority) of the routes it installs; a route of another protocol
    #: with the same prefix, table and metric is a conflict and is never touched.
    metric: Annotated[int, Meta(ge=0, le=4294967295)] = 0
    #: Seconds between full re-reads of the kernel table (repairs drift such as a
    #: route removed by hand or a link that came back).
    resync_interval: Annotated[float, Meta(ge=1, le=3600)] = 30


class HealerConfig(_Cfg, frozen=True, kw_only=True):
    """Datapath liveness check settings (overridden by NSM_LIVENESS_CHECK_* variables)."""

    liveness_check_enabled: bool = True
    liveness_check_interval: Annotated[float, Meta(gt=0, le=60)] = 0.2
    liveness_check_timeout: Annotated[float, Meta(gt=0, le=60)] = 1.0
    #: Backoff between failed heals: base x 2^(failures-1) seconds, capped, +/- jitter (a
    #: fraction), so a client whose every path is broken never loops (docs/healer.md).
    backoff_base: Annotated[float, Meta(gt=0, le=3600)] = 0.5
    backoff_max: Annotated[float, Meta(gt=0, le=86400)] = 30.0
    backoff_jitter: Annotated[float, Meta(ge=0, le=1)] = 0.25
    #: Seconds to wait for the enforcer's load-balancer answer before choosing locally.
    select_timeout: Annotated[float, Meta(gt=0, le=60)] = 0.5
    #: The built-in reconnect hook's routes: its own protocol number, table and metric.
    route_protocol: Annotated[int, Meta(ge=5, le=255)] = 200
    route_table: Annotated[int, Meta(ge=1, le=4294967295)] = 254
    route_metric: Annotated[int, Meta(ge=0, le=4294967295)] = 0


class GrafanaConfig(_Cfg, frozen=True, kw_only=True):
    url: str | None = None
    token: str | None = None
    annotate_alarms: bool = False


class TrafficClassConfig(_Cfg, frozen=True, kw_only=True):
    dscp: Dscp


def _default_classes() -> dict[TrafficClass, TrafficClassConfig]:
    return {
        "high": TrafficClassConfig(dscp=46),
        "medium": TrafficClassConfig(dscp=34),
        "low": TrafficClassConfig(dscp=18),
        "best-effort": TrafficClassConfig(dscp=0),
    }


# --- reachability profiles --------------------------------------------------


class TimeToEstablishment(_Cfg, frozen=True, kw_only=True):
    """Time-to-establishment limits in ms; 0 disables one limit."""

    enabled: bool = True
    max: Millis = 500
    mean: Millis = 250


class ClassThresholds(_Cfg, frozen=True, kw_only=True):
    """Thresholds of one (protocol, traffic class); error threshold 0 disables it."""

    acceptable_error_threshold: Pct = 25
    time_to_establishment: TimeToEstablishment = field(default_factory=TimeToEstablishment)


ClassTable = dict[TrafficClass, ClassThresholds]


class ReachabilityProfile(_Cfg, frozen=True, kw_only=True):
    """Per protocol, per traffic class thresholds (router `reachability-profile`)."""

    tcp: ClassTable = {}
    udp: ClassTable = {}
    tls: ClassTable = {}
    http: ClassTable = {}


# --- probe profiles --------------------------------------------------------


class LatencySla(_Cfg, frozen=True, kw_only=True):
    max: Millis = 250
    mean: Millis = 100


class SlaMetrics(_Cfg, frozen=True, kw_only=True):
    max_loss: Pct = 10
    latency: LatencySla = field(default_factory=LatencySla)
    max_jitter: Millis | None = None


class _ProbeTiming(_Cfg, frozen=True, kw_only=True):
    """Attempts are spaced probe-duration / number-of-attempts apart."""

    probe_interval: FastProbeInterval = 10
    number_of_attempts: Attempts = 4
    probe_duration: FastProbeDuration = 1
    traffic_classes: list[TrafficClass] = field(default_factory=lambda: ["best-effort"])


class IcmpProbeProfile(_ProbeTiming, frozen=True, kw_only=True):
    """Router `icmp-probe-profile`: every probe-address must meet the SLA."""

    probe_interval: ProbeInterval = 10
    probe_duration: ProbeDuration = 1

    probe_address: Annotated[list[str], Meta(min_length=1)]
    sla_metrics: SlaMetrics = field(default_factory=SlaMetrics)


class TcpProbeProfile(_ProbeTiming, frozen=True, kw_only=True):
    """TCP connect: time-to-establishment per attempt."""

    probe_address: Annotated[list[str], Meta(min_length=1)]
    port: Port
    #: ms to keep the connection open after establishment; a reset in that time is
    #: reported as `reset` (peers that accept and then reset). 0 closes at once.
    hold_open: Annotated[float, Meta(ge=0, le=10000)] = 0


class TlsProbeProfile(_ProbeTiming, frozen=True, kw_only=True):
    """TLS handshake after TCP establishment."""

    probe_address: Annotated[list[str], Meta(min_length=1)]
    port: Port = 443
    server_name: str | None = None
    accept_self_signed: bool = False
    ca_file: str | None = None


class UdpProbeProfile(_ProbeTiming, frozen=True, kw_only=True):
    """UDP request/response; without `expect` any reply counts."""

    probe_address: Annotated[list[str], Meta(min_length=1)]
    port: Port
    payload: str = "pathwatch"
    expect: str | None = None


class HttpProbeProfile(_ProbeTiming, frozen=True, kw_only=True):
    """Router `http-probe-profile`."""

    probe_interval: ProbeInterval = 10
    probe_duration: ProbeDuration = 1

    url: str
    valid_status_code: list[Annotated[int, Meta(ge=100, le=599)]] = field(
        default_factory=lambda: [200]
    )
    up_delay_timer: Annotated[float, Meta(ge=0, le=3600)] = 0
    accept_self_signed: bool = False
    sla_metrics: SlaMetrics = field(default_factory=SlaMetrics)


class ProbeRef(_Cfg, frozen=True, kw_only=True):
    """A probe of a route: exactly one profile reference, or a plugin kind."""

    name: str
    icmp_probe_profile: str | None = None
    tcp_probe_profile: str | None = None
    tls_probe_profile: str | None = None
    udp_probe_profile: str | None = None
    http_probe_profile: str | None = None
    plugin: str | None = None
    options: dict[str, str] = {}

    def profile_ref(self) -> tuple[str, str] | None:
        """(kind, profile name) of the referenced profile, or None for a plugin."""
        for kind in ("icmp", "tcp", "tls", "udp", "http"):
            ref: str | None = getattr(self, f"{kind}_probe_profile")
            if ref is not None:
                return kind, ref
        return None


# --- passive learning ------------------------------------------------------


class PassiveConfig(_Cfg, frozen=True, kw_only=True):
    """Passive learning from conntrack (docs/passive.md); off unless `enabled`.

    Sessions whose destination falls in a service's `address` are measured on
    the route they leave by. `classifier` picks the traffic class: `port`
    (destination port -> class from `port-classes`), `mark` (the conntrack
    mark, masked by `mark-mask`, is the DSCP, mapped through `traffic-classes`)
    or `fixed` (always `default-class`). A TCP / UDP session not established
    after `tcp-timeout` / `udp-timeout` s is a timeout-before-establishment
    even if the kernel still tracks it. Measurements go out every
    `round-interval` s, at most `max-batch-items` per MeasurementBatch.
    """

    enabled: bool = False
    netns: str | None = None
    classifier: Literal["port", "mark", "fixed"] = "port"
    default_class: TrafficClass = "best-effort"
    port_classes: dict[Port, TrafficClass] = {}
    mark_mask: Annotated[int, Meta(ge=1, le=4294967295)] = 63
    protocols: list[Literal["tcp", "udp"]] = field(default_factory=lambda: ["tcp", "udp"])
    tcp_timeout: Annotated[float, Meta(gt=0, le=3600)] = 30
    udp_timeout: Annotated[float, Meta(gt=0, le=3600)] = 30
    icmp_errors: bool = True
    round_interval: Annotated[float, Meta(ge=0.05, le=60)] = 1.0
    max_batch_items: Annotated[int, Meta(ge=1, le=100000)] = 2000
    max_sessions: Annotated[int, Meta(ge=1, le=10000000)] = 200000
    route_cache_ttl: Annotated[float, Meta(ge=0, le=3600)] = 5.0


# --- services -------------------------------------------------------------


class NextHop(_Cfg, frozen=True, kw_only=True):
    node: str
    interface: str | None = None
    gateway_ip: str | None = None
    source_address: str | None = None


class ReachabilityDetection(_Cfg, frozen=True, kw_only=True):
    """Router `reachability-detection` of a service-route, plus the fast path."""

    enabled: bool = True
    enforcement: bool = True
    detection_window: Annotated[float, Meta(ge=1, le=3600)] = 5
    hold_down: Annotated[float, Meta(ge=0, le=86400)] = 60
    max_hold_down: Annotated[float, Meta(ge=0, le=86400)] = 3600
    reachability_profile: str | None = None
    probe_type: Literal["always", "disabled"] = "always"
    probes: list[ProbeRef] = []
    consecutive_failures: Annotated[int, Meta(ge=0, le=100)] = 3
    min_samples: Annotated[int, Meta(ge=1, le=100000)] = 3


class ServiceRoute(_Cfg, frozen=True, kw_only=True):
    next_hop: NextHop
    cost: Annotated[int, Meta(ge=0, le=4294967295)] = 10
    reachability_detection: ReachabilityDetection = field(default_factory=ReachabilityDetection)


class ServicePolicy(_Cfg, frozen=True, kw_only=True):
    best_effort: bool = True


class Service(_Cfg, frozen=True, kw_only=True):
    address: list[str] = []
    service_policy: ServicePolicy = field(default_factory=ServicePolicy)
    service_routes: dict[str, ServiceRoute] = {}


class PathwatchConfig(_Cfg, frozen=True, kw_only=True):
    """The whole configuration file."""

    nats: NatsConfig = field(default_factory=NatsConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    aggregator: AggregatorConfig = field(default_factory=AggregatorConfig)
    enforcer: EnforcerConfig = field(default_factory=EnforcerConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    healer: HealerConfig = field(default_factory=HealerConfig)
    grafana: GrafanaConfig = field(default_factory=GrafanaConfig)
    traffic_classes: dict[TrafficClass, TrafficClassConfig] = field(
        default_factory=_default_classes
    )
    reachability_profiles: dict[str, ReachabilityProfile] = {}
    icmp_probe_profiles: dict[str, IcmpProbeProfile] = {}
    tcp_probe_profiles: dict[str, TcpProbeProfile] = {}
    tls_probe_profiles: dict[str, TlsProbeProfile] = {}
    udp_probe_profiles: dict[str, UdpProbeProfile] = {}
    http_probe_profiles: dict[str, HttpProbeProfile] = {}
    services: dict[str, Service] = {}
    passive: PassiveConfig = field(default_factory=PassiveConfig)
    notifiers: dict[str, NotifierConfig] = {}

    def dscp(self, traffic_class: TrafficClass) -> int:
        entry = self.traffic_classes.get(traffic_class)
        if entry is not None:
            return entry.dscp
        return _default_classes()[traffic_class].dscp

    def routes(self) -> list[tuple[str, str, Service, ServiceRoute]]:
        """Every (service name, route name, service, route), in config order."""
        return [
            (service_name, route_name, service, route)
            for service_name, service in self.services.items()
            for route_name, route in service.service_routes.items()
        ]

    def probe_profile(
        self, ref: ProbeRef
    ) -> (
        IcmpProbeProfile
        | TcpProbeProfile
        | TlsProbeProfile
        | UdpProbeProfile
        | HttpProbeProfile
        | None
    ):
        """The profile a probe reference names, or None for plugins and dangling references."""
        found = ref.profile_ref()
        if found is None:
            return None
        kind, name = found
        table: dict[str, object] = getattr(self, f"{kind}_probe_profiles")
        profile = table.get(name)
        return profile  # type: ignore[return-value]
