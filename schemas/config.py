"""The configuration model: kebab-case keys, router-CLI defaults and ranges.

Every key is declared once here with its type, range, default, unit and
description (`schemas.units`); the JSON Schema export, `docs/config.md`
(`pathwatch config docs`) and the decoder read them from these declarations.
Adding a key is adding one line here. The keys that exist once per probe kind
(`<kind>-probe-profiles`, a probe's `<kind>-probe-profile`, a reachability
profile's protocol tables) are added to their sections from the registry in
`schemas.probekinds`, where each kind's profile is declared. Structural checks
(types, ranges, unknown keys) come from msgspec through `schemas.decode`;
semantic checks (references, duplicates, warnings) live in `schemas.validate`
and `schemas.advice`.
Units follow the router CLI: seconds for windows, intervals and hold-down,
milliseconds for latencies, percent for thresholds; a duration key also takes a
string with units (`30s`, `200ms`, `5m`, `1m30s`).
"""

from typing import TYPE_CHECKING, Annotated, Any, Literal

from msgspec import Meta, defstruct, field

from schemas.probekinds import KINDS, REACHABILITY_PROTOCOLS, ProbeKind, probe_kind
from schemas.probeprofile import LatencySla, ProbeProfile, ReplyTimeout, SlaMetrics
from schemas.section import ConfigSection, Port, Uint32
from schemas.traffic import TrafficClass
from schemas.units import key, millis, percent, seconds

__all__ = ["LatencySla", "ProbeProfile", "ReplyTimeout", "SlaMetrics"]

#: Up to ten years.
_RETENTION = {"gt": 0, "le": 86400 * 3650}


# --- infrastructure -------------------------------------------------------


class NatsConfig(ConfigSection, frozen=True, kw_only=True):
    """`url: embedded` runs an embedded nats-server; otherwise a comma-separated server list."""

    url: Annotated[
        str,
        key(
            "NATS servers, comma-separated (nats://a:4222,nats://b:4222), or `embedded` for"
            " a nats-server started in-process (loopback only). PATHWATCH_NATS_URL overrides it."
        ),
    ] = "embedded"
    credentials: Annotated[
        str | None, key("NATS credentials file (.creds). PATHWATCH_NATS_CREDENTIALS overrides it.")
    ] = None
    user: Annotated[str | None, key("NATS user name. PATHWATCH_NATS_USER overrides it.")] = None
    password: Annotated[str | None, key("NATS password. PATHWATCH_NATS_PASSWORD overrides it.")] = (
        None
    )
    token: Annotated[
        str | None, key("NATS authentication token. PATHWATCH_NATS_TOKEN overrides it.")
    ] = None
    tls_ca: Annotated[str | None, key("CA file that verifies the NATS servers (PEM).")] = None
    tls_cert: Annotated[str | None, key("Client certificate for NATS TLS (PEM).")] = None
    tls_key: Annotated[str | None, key("Private key of `tls-cert` (PEM).")] = None
    store_dir: Annotated[
        str, key("JetStream store directory of the embedded nats-server (`url: embedded` only).")
    ] = ".pathwatch/nats"
    replicas: Annotated[
        int, key("Replicas of pathwatch's JetStream streams and KV buckets.", ge=1, le=5)
    ] = 1


class ApiConfig(ConfigSection, frozen=True, kw_only=True):
    """REST API; a token is required when it listens off loopback."""

    listen: Annotated[str, key("HOST:PORT the REST API and status page listen on.")] = (
        "127.0.0.1:8640"
    )
    token: Annotated[
        str | None,
        key(
            "Bearer token required on every /api/ route when set; required when `listen` is"
            " not on loopback. Must not be empty or have surrounding whitespace."
        ),
    ] = None


class RetentionConfig(ConfigSection, frozen=True, kw_only=True):
    """How long history is kept, like the router's rollups."""

    raw: Annotated[float, seconds("How long raw windows are kept.", **_RETENTION)] = 3600
    five_minute: Annotated[
        float, seconds("How long five-minute rollups are kept.", **_RETENTION)
    ] = 86400
    hourly: Annotated[float, seconds("How long hourly rollups are kept.", **_RETENTION)] = (
        86400 * 180
    )


class StoreConfig(ConfigSection, frozen=True, kw_only=True):
    """The aggregator's SQLite history store."""

    path: Annotated[str, key("SQLite file of the window history ('' for none).")] = "pathwatch.db"
    retention: Annotated[RetentionConfig, key("How long history is kept.")] = field(
        default_factory=RetentionConfig
    )


class MetricsConfig(ConfigSection, frozen=True, kw_only=True):
    """Prometheus exporter of the aggregator (`/metrics`)."""

    listen: Annotated[str, key("HOST:PORT of the aggregator's Prometheus /metrics.")] = (
        "127.0.0.1:9640"
    )
    per_destination: Annotated[
        bool, key("Also export one series per probe and destination (more series).")
    ] = False


class AggregatorConfig(ConfigSection, frozen=True, kw_only=True):
    """Windowing of measurements into statistics."""

    allowed_lateness: Annotated[
        Annotated[float, Meta(ge=0, le=60)] | None,
        seconds(
            "How long after a window ends late measurements are still counted; null means"
            " the smaller of 1 s and half the window."
        ),
    ] = None
    max_future_skew: Annotated[
        float,
        seconds("Measurements stamped further than this in the future are dropped.", gt=0, le=3600),
    ] = 5.0
    skew_alarm: Annotated[
        float,
        seconds("An agent's clock further off than this raises a clock-skew alarm.", gt=0, le=3600),
    ] = 1.0
    skew_alarm_after: Annotated[
        float,
        seconds(
            "How long an agent's clock must stay off by more than `skew-alarm` before the"
            " alarm is raised; the offset is judged on the batches that arrived in the last"
            " this-many seconds, so batches that waited out a NATS outage (old `sent` times)"
            " are never judged alone.",
            ge=0,
            le=3600,
        ),
    ] = 30.0


class EnforcerConfig(ConfigSection, frozen=True, kw_only=True):
    """Active/standby enforcer."""

    lease_ttl: Annotated[
        float, seconds("Lease of the active enforcer; a standby takes over after it.", ge=1, le=300)
    ] = 5.0
    agent_silence_windows: Annotated[
        int,
        key(
            "Detection windows without a heartbeat after which an agent-lost alarm is raised.",
            ge=1,
            le=100,
        ),
    ] = 3


class RouterConfig(ConfigSection, frozen=True, kw_only=True):
    """Route actuator: `ecmp` spreads over in-service next hops by cost, `best` uses one."""

    mode: Annotated[
        Literal["ecmp", "best"],
        key("`ecmp`: every in-service next hop of the lowest cost; `best`: one next hop."),
    ] = "ecmp"
    table: Annotated[int, key("Kernel routing table the routes go into.", ge=1, le=4294967295)] = (
        254
    )
    protocol: Annotated[
        int, key("Route protocol number that marks pathwatch's routes.", ge=1, le=255)
    ] = 199
    dry_run: Annotated[bool, key("Log the route changes instead of making them.")] = False
    metric: Annotated[
        Uint32,
        key(
            "Route metric (priority) of the routes it installs; a route of another protocol"
            " with the same prefix, table and metric is a conflict and is never touched."
        ),
    ] = 0
    resync_interval: Annotated[
        float,
        seconds(
            "Time between full re-reads of the kernel table (repairs drift such as a route"
            " removed by hand or a link that came back).",
            ge=1,
            le=3600,
        ),
    ] = 30


class HealerConfig(ConfigSection, frozen=True, kw_only=True):
    """Datapath liveness check settings (overridden by NSM_LIVENESS_CHECK_* variables)."""

    liveness_check_enabled: Annotated[
        bool, key("Run the datapath liveness check. NSM_LIVENESS_CHECK_ENABLED overrides it.")
    ] = True
    liveness_check_interval: Annotated[
        float,
        seconds(
            "Time between liveness checks. NSM_LIVENESS_CHECK_INTERVAL overrides it.", gt=0, le=60
        ),
    ] = 0.2
    liveness_check_timeout: Annotated[
        float,
        seconds(
            "Deadline of one liveness check. NSM_LIVENESS_CHECK_TIMEOUT overrides it.", gt=0, le=60
        ),
    ] = 1.0
    backoff_base: Annotated[
        float,
        seconds(
            "Backoff after the first failed heal; it doubles per further failure (docs/healer.md).",
            gt=0,
            le=3600,
        ),
    ] = 0.5
    backoff_max: Annotated[
        float, seconds("Cap of the backoff between failed heals.", gt=0, le=86400)
    ] = 30.0
    backoff_jitter: Annotated[
        float, key("Random spread of each backoff, a fraction (0.25 is +/- 25 %).", ge=0, le=1)
    ] = 0.25
    select_timeout: Annotated[
        float,
        seconds(
            "How long to wait for the enforcer's load-balancer answer before choosing locally.",
            gt=0,
            le=60,
        ),
    ] = 0.5
    route_protocol: Annotated[
        int, key("Route protocol number of the built-in reconnect hook's routes.", ge=5, le=255)
    ] = 200
    route_table: Annotated[
        int, key("Routing table of the built-in reconnect hook's routes.", ge=1, le=4294967295)
    ] = 254
    route_metric: Annotated[Uint32, key("Metric of the built-in reconnect hook's routes.")] = 0


class GrafanaConfig(ConfigSection, frozen=True, kw_only=True):
    """Grafana that receives alarm annotations."""

    url: Annotated[str | None, key("Grafana base URL.")] = None
    token: Annotated[str | None, key("Grafana service-account token.")] = None
    annotate_alarms: Annotated[
        bool, key("Write an annotation into Grafana for every alarm raised and cleared.")
    ] = False


#: Alertmanager re-send interval when `resend-interval` is not set.
DEFAULT_RESEND_INTERVAL_S = 60.0


class NotifierRetry(ConfigSection, frozen=True, kw_only=True):
    """How a failed delivery is retried (docs/notifier.md, "Delivery")."""

    initial: Annotated[
        float, seconds("Wait before the first retry; each later wait doubles.", gt=0, le=3600)
    ] = 1.0
    max: Annotated[float, seconds("Longest wait between two retries.", gt=0, le=3600)] = 30.0
    give_up_after: Annotated[
        float,
        seconds(
            "An alarm still failing this long after its first attempt is dead-lettered"
            " (`expired`).",
            gt=0,
            le=30 * 86400,
        ),
    ] = 86400.0


class NotifierConfig(ConfigSection, frozen=True, kw_only=True):
    """One notifier: a receiver of raised and cleared alarms, fed by its own durable
    consumer of the alarm stream (docs/notifier.md)."""

    kind: Annotated[
        Literal["alertmanager", "webhook"],
        key(
            "`alertmanager`: alerts through Alertmanager's v2 API at `url`; `webhook`: a"
            " JSON POST of each alarm to `url`, signed with HMAC-SHA256."
        ),
    ]
    url: Annotated[
        str,
        key(
            "http(s) URL: Alertmanager's base URL (`/api/v2/alerts` is added), or the"
            " webhook's full URL."
        ),
    ]
    timeout: Annotated[
        float, seconds("Longest wait for the receiver's answer to one request.", gt=0, le=300)
    ] = 5.0
    services: Annotated[
        list[str],
        key("Only alarms of these services (`_system`: alarms about pathwatch); empty: all."),
    ] = []
    retry: Annotated[NotifierRetry, key("Retries of a failed delivery.")] = field(
        default_factory=NotifierRetry
    )
    resend_interval: Annotated[
        Annotated[float, Meta(gt=0, le=3600)] | None,
        seconds(
            "alertmanager: how often active alarms are sent again, to stay well inside"
            " Alertmanager's `resolve_timeout` (5 minutes by default); null means 60 s."
        ),
    ] = None
    secret: Annotated[
        str | None,
        key("webhook: the shared secret of the signature (or give `secret-file`)."),
    ] = None
    secret_file: Annotated[
        str | None, key("webhook: a file holding the shared secret (read at start).")
    ] = None


class TrafficClassConfig(ConfigSection, frozen=True, kw_only=True):
    """The DSCP marking of one traffic class."""

    dscp: Annotated[int, key("DSCP value (0-63) of the class's probes.", ge=0, le=63)]


def _default_classes() -> dict[TrafficClass, TrafficClassConfig]:
    return {
        "high": TrafficClassConfig(dscp=46),
        "medium": TrafficClassConfig(dscp=34),
        "low": TrafficClassConfig(dscp=18),
        "best-effort": TrafficClassConfig(dscp=0),
    }


# --- reachability profiles --------------------------------------------------


class TimeToEstablishment(ConfigSection, frozen=True, kw_only=True):
    """Time-to-establishment limits in ms; 0 disables one limit."""

    enabled: Annotated[bool, key("Judge time-to-establishment at all.")] = True
    max: Annotated[
        float,
        millis("Largest time-to-establishment allowed in a window; 0 disables.", ge=0, le=600000),
    ] = 500
    mean: Annotated[
        float,
        millis(
            "Largest mean time-to-establishment allowed in a window; 0 disables.", ge=0, le=600000
        ),
    ] = 250


class ClassThresholds(ConfigSection, frozen=True, kw_only=True):
    """Thresholds of one (protocol, traffic class); error threshold 0 disables it."""

    acceptable_error_threshold: Annotated[
        float, percent("Largest share of failed attempts or sessions in a window; 0 disables.")
    ] = 25
    time_to_establishment: Annotated[TimeToEstablishment, key("Time-to-establishment limits.")] = (
        field(default_factory=TimeToEstablishment)
    )


ClassTable = Annotated[
    dict[TrafficClass, ClassThresholds],
    key(
        "Thresholds per traffic class (high, medium, low, best-effort); a class without an"
        " entry is judged against the defaults."
    ),
]


def _section(name: str, base: type, doc: str, fields: list[tuple[str, Any, Any]]) -> Any:
    """A config section whose keys per probe kind come from `schemas.probekinds`:
    `base` holds the fixed keys (and is what type checkers see), `fields` the
    (attribute, annotation, default) added for each kind."""
    return defstruct(
        name,
        fields,
        bases=(base,),
        module=__name__,
        namespace={"__doc__": doc},
        kw_only=True,
        frozen=True,
    )


class _ReachabilityTables(ConfigSection, frozen=True, kw_only=True):
    """Fixed part of a reachability profile (none: every key is a protocol)."""

    def table(self, protocol: str) -> dict[TrafficClass, ClassThresholds]:
        """The class table of `protocol` (empty for protocols it does not judge)."""
        found: dict[TrafficClass, ClassThresholds] = getattr(self, protocol, {})
        return found


if TYPE_CHECKING:
    ReachabilityProfile = _ReachabilityTables
else:
    ReachabilityProfile = _section(
        "ReachabilityProfile",
        _ReachabilityTables,
        "Per protocol, per traffic class thresholds (router `reachability-profile`).",
        [(protocol, ClassTable, {}) for protocol in REACHABILITY_PROTOCOLS],
    )


# --- probe references -------------------------------------------------------

_PROFILE_REF = "Name of the {kind}-probe-profile this probe runs."


class _ProbeRefFixed(ConfigSection, frozen=True, kw_only=True):
    """Fixed keys of a probe reference; one `<kind>-probe-profile` key per kind is added."""

    name: Annotated[str, key("Name of the probe, unique within the route.")]
    plugin: Annotated[
        str | None,
        key("Kind of a plugin probe (docs: plugins), whose state is set through the REST API."),
    ] = None
    options: Annotated[dict[str, str], key("Options handed to the plugin probe.")] = {}

    def profile_refs(self) -> list[tuple[ProbeKind, str]]:
        """Every (kind, profile name) this reference names (valid ones name one)."""
        return [
            (kind, ref) for kind in KINDS if (ref := getattr(self, kind.ref_attr, None)) is not None
        ]

    def profile_ref(self) -> tuple[str, str] | None:
        """(kind, profile name) of the referenced profile, or None for a plugin."""
        refs = self.profile_refs()
        return (refs[0][0].name, refs[0][1]) if refs else None


if TYPE_CHECKING:
    ProbeRef = _ProbeRefFixed
else:
    ProbeRef = _section(
        "ProbeRef",
        _ProbeRefFixed,
        "A probe of a route: exactly one profile reference, or a plugin kind.",
        [
            (kind.ref_attr, Annotated[str | None, key(_PROFILE_REF.format(kind=kind.name))], None)
            for kind in KINDS
        ],
    )


# --- passive learning ------------------------------------------------------


class PassiveConfig(ConfigSection, frozen=True, kw_only=True):
    """Passive learning from conntrack (docs/passive.md); off unless `enabled`.

    Sessions whose destination falls in a service's `address` are measured on
    the route they leave by.
    """

    enabled: Annotated[bool, key("Learn session establishment from conntrack.")] = False
    netns: Annotated[
        str | None, key("Network namespace whose conntrack is read; null: the agent's own.")
    ] = None
    classifier: Annotated[
        Literal["port", "mark", "fixed"],
        key(
            "How a session's traffic class is chosen: `port` (destination port through"
            " port-classes), `mark` (conntrack mark & mark-mask is the DSCP, mapped through"
            " traffic-classes) or `fixed` (always default-class)."
        ),
    ] = "port"
    default_class: Annotated[
        TrafficClass, key("Class of sessions the classifier cannot place.")
    ] = "best-effort"
    port_classes: Annotated[
        dict[Port, TrafficClass], key("Destination port -> traffic class (classifier `port`).")
    ] = {}
    mark_mask: Annotated[
        int, key("Mask applied to the conntrack mark (classifier `mark`).", ge=1, le=4294967295)
    ] = 63
    protocols: Annotated[list[Literal["tcp", "udp"]], key("Protocols learned.")] = field(
        default_factory=lambda: ["tcp", "udp"]
    )
    tcp_timeout: Annotated[
        float,
        seconds(
            "A TCP session not established after this is a timeout-before-establishment.",
            gt=0,
            le=3600,
        ),
    ] = 30
    udp_timeout: Annotated[
        float,
        seconds(
            "A UDP session without a reply after this is a timeout-before-establishment.",
            gt=0,
            le=3600,
        ),
    ] = 30
    icmp_errors: Annotated[
        bool, key("Count ICMP unreachable answers to a session as its error.")
    ] = True
    round_interval: Annotated[
        float, seconds("Time between two batches of passive measurements.", ge=0.05, le=60)
    ] = 1.0
    max_batch_items: Annotated[
        int, key("Most measurements in one MeasurementBatch.", ge=1, le=100000)
    ] = 2000
    max_sessions: Annotated[
        int, key("Most sessions tracked at once (older ones are dropped).", ge=1, le=10000000)
    ] = 200000
    route_cache_ttl: Annotated[
        float, seconds("How long a session's egress route lookup is cached.", ge=0, le=3600)
    ] = 5.0


# --- services -------------------------------------------------------------


class NextHop(ConfigSection, frozen=True, kw_only=True):
    """Where a service-route leaves: node, interface and gateway."""

    node: Annotated[str, key("Node (host) that owns the route; its agent probes it.")]
    interface: Annotated[str | None, key("Egress interface; probes are pinned to it.")] = None
    gateway_ip: Annotated[str | None, key("Gateway address of the route (an IP).")] = None
    source_address: Annotated[
        str | None, key("Source address the probes of this route use (an IP).")
    ] = None


class ReachabilityDetection(ConfigSection, frozen=True, kw_only=True):
    """Router `reachability-detection` of a service-route, plus the fast path."""

    enabled: Annotated[bool, key("Judge this route at all.")] = True
    enforcement: Annotated[
        bool,
        key(
            "Take the route out of service when it fails; false is detection mode (judged and"
            " reported, never acted on)."
        ),
    ] = True
    detection_window: Annotated[
        float, seconds("Length of the windows measurements are judged in.", ge=1, le=3600)
    ] = 5
    hold_down: Annotated[
        float,
        seconds(
            "How long a failed route stays out of service before probation; repeated failures"
            " multiply it.",
            ge=0,
            le=86400,
        ),
    ] = 60
    max_hold_down: Annotated[float, seconds("Cap of the multiplied hold-down.", ge=0, le=86400)] = (
        3600
    )
    recovery_probes: Annotated[
        int,
        key(
            "Probe-verified recovery: successful probe replies every enforced probe lane needs"
            " since the fault (in a row; of a window with errors only its successes count)"
            " before the route comes back after a hold-down; until then each hold-down end"
            " extends the hold-down (next multiplier). 0, and routes without active probes"
            " (probe-type disabled, or no probe sending packets), come back on probation"
            " with organic traffic.",
            ge=0,
            le=100000,
        ),
    ] = 3
    reachability_profile: Annotated[
        str | None,
        key("Name of the reachability-profile judging this route; null: the defaults."),
    ] = None
    probe_type: Annotated[
        Literal["always", "disabled"],
        key("`always` runs the probes; `disabled` judges passive traffic only."),
    ] = "always"
    probes: Annotated[list[ProbeRef], key("Active probes of this route.")] = []
    consecutive_failures: Annotated[
        int,
        key(
            "Failed attempts in a row that take the route down at once (fast path); 0 disables.",
            ge=0,
            le=100,
        ),
    ] = 3
    min_samples: Annotated[
        int, key("Fewest samples a lane needs in a window to be judged.", ge=1, le=100000)
    ] = 3


class ServiceRoute(ConfigSection, frozen=True, kw_only=True):
    """One way to reach a service (router `service-route`)."""

    next_hop: Annotated[NextHop, key("Where the route leaves.")]
    cost: Annotated[Uint32, key("Cost; lower is preferred.")] = 10
    reachability_detection: Annotated[ReachabilityDetection, key("How the route is judged.")] = (
        field(default_factory=ReachabilityDetection)
    )


class ServicePolicy(ConfigSection, frozen=True, kw_only=True):
    """What to do when every route of a service is down."""

    best_effort: Annotated[
        bool, key("Keep the best of the down routes in service when every route is down.")
    ] = True


class Service(ConfigSection, frozen=True, kw_only=True):
    """A destination with its routes (router `service`)."""

    address: Annotated[list[str], key("Prefixes of the service (CIDR).")] = []
    service_policy: Annotated[ServicePolicy, key("Policy when every route is down.")] = field(
        default_factory=ServicePolicy
    )
    service_routes: Annotated[
        dict[str, ServiceRoute], key("The service's routes by name ([A-Za-z0-9_-]+).")
    ] = {}


class _PathwatchConfigFixed(ConfigSection, frozen=True, kw_only=True):
    """Fixed keys of the config file; one `<kind>-probe-profiles` key per kind is added."""

    nats: Annotated[NatsConfig, key("NATS connection.")] = field(default_factory=NatsConfig)
    api: Annotated[ApiConfig, key("REST API and status page.")] = field(default_factory=ApiConfig)
    store: Annotated[StoreConfig, key("History store.")] = field(default_factory=StoreConfig)
    metrics: Annotated[MetricsConfig, key("Prometheus exporter.")] = field(
        default_factory=MetricsConfig
    )
    aggregator: Annotated[AggregatorConfig, key("Windowing.")] = field(
        default_factory=AggregatorConfig
    )
    enforcer: Annotated[EnforcerConfig, key("Enforcer lease and agent liveness.")] = field(
        default_factory=EnforcerConfig
    )
    router: Annotated[RouterConfig, key("Route actuator.")] = field(default_factory=RouterConfig)
    healer: Annotated[HealerConfig, key("Client healing and datapath liveness.")] = field(
        default_factory=HealerConfig
    )
    grafana: Annotated[GrafanaConfig, key("Grafana annotations.")] = field(
        default_factory=GrafanaConfig
    )
    traffic_classes: Annotated[
        dict[TrafficClass, TrafficClassConfig], key("DSCP marking per traffic class.")
    ] = field(default_factory=_default_classes)
    reachability_profiles: Annotated[
        dict[str, ReachabilityProfile], key("Reachability profiles by name.")
    ] = {}
    services: Annotated[dict[str, Service], key("Services by name ([A-Za-z0-9_-]+).")] = {}
    passive: Annotated[PassiveConfig, key("Passive learning from conntrack.")] = field(
        default_factory=PassiveConfig
    )
    notifiers: Annotated[
        dict[str, NotifierConfig],
        key("Where alarms are pushed, by notifier name ([A-Za-z0-9_-]+; docs/notifier.md)."),
    ] = {}

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

    def probe_profiles(self, kind: str) -> dict[str, ProbeProfile]:
        """The profiles of probe kind `kind` by name (empty for plugins)."""
        found = probe_kind(kind)
        profiles: dict[str, ProbeProfile] = (
            {} if found is None else getattr(self, found.profiles_attr)
        )
        return profiles

    def probe_profile(self, ref: ProbeRef) -> ProbeProfile | None:
        """The profile a probe reference names, or None for plugins and dangling references."""
        found = ref.profile_ref()
        if found is None:
            return None
        kind, name = found
        return self.probe_profiles(kind).get(name)


if TYPE_CHECKING:
    PathwatchConfig = _PathwatchConfigFixed
else:
    PathwatchConfig = _section(
        "PathwatchConfig",
        _PathwatchConfigFixed,
        "The whole configuration file.",
        [
            (
                kind.profiles_attr,
                Annotated[dict[str, kind.profile], key(f"{kind.title} probe profiles by name.")],
                {},
            )
            for kind in KINDS
        ],
    )
