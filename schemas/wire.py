"""Wire messages and shared state of pathwatch (DESIGN.md, "Wire contract").

Every message is a frozen msgspec Struct encoded as JSON and carries `v`, the
schema version. Timestamps are Unix seconds (float); latencies milliseconds;
rates percent.
"""

from typing import TYPE_CHECKING, Annotated, Literal, NamedTuple

from msgspec import Meta, Struct

from schemas.limits import MAX_LABEL_CHARS, MAX_STATUS_COUNTERS
from schemas.names import Name
from schemas.probekinds import PROBE_PROTOCOLS
from schemas.traffic import TRAFFIC_CLASSES as TRAFFIC_CLASSES
from schemas.traffic import TrafficClass as TrafficClass

SCHEMA_VERSION = 1

#: Protocols of lanes: those of the probe kinds (`schemas.probekinds`) and `link`.
PROTOCOLS: tuple[str, ...] = (*PROBE_PROTOCOLS, "link")
if TYPE_CHECKING:
    Protocol = str
else:
    Protocol = Literal[PROTOCOLS]
SourceKind = Literal["probe", "passive", "link"]

#: What happened to one attempt or one session.
Outcome = Literal[
    "ok",
    "timeout",
    "refused",
    "reset",
    "unreachable",
    "send-failed",
    "tls-handshake-error",
    "tls-cert-error",
    "http-status",
    "dns-error",
    "bad-reply",
    "close-before-establishment",
    "timeout-before-establishment",
    "link-down",
    "error",
]
OUTCOMES: tuple[str, ...] = Outcome.__args__  # type: ignore[attr-defined]

PathStateName = Literal["unknown", "up", "down", "probation"]
ProbeStateName = Literal["unknown", "up", "down", "probation"]
#: What brings a route back after its hold-down (DESIGN.md, "Path state machine").
RecoveryRule = Literal["probe-verified", "organic-traffic"]

#: Unix seconds, up to the year 2100 (`limits.MAX_CLOCK_OFFSET_S` bounds event
#: times further, against the receiver's clock).
Timestamp = Annotated[float, Meta(ge=0, le=4102444800)]
Millis = Annotated[float, Meta(ge=0, le=3.6e6)]
Percent = Annotated[float, Meta(ge=0, le=100)]
Count = Annotated[int, Meta(ge=0)]
#: An aggregator replica's name ("" when not said).
ReplicaName = Annotated[str, Meta(max_length=64)]
#: A lane label taken from input (measurement `destination`, `probe`).
Label = Annotated[str, Meta(max_length=MAX_LABEL_CHARS)]


class Message(Struct, frozen=True, kw_only=True, gc=False, forbid_unknown_fields=False):
    """Base of every wire message: `v` is the schema version."""

    v: int = SCHEMA_VERSION


# --- measurements ---------------------------------------------------------


class Measurement(Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """One attempt (probe), one session (passive) or one link observation.

    Fields at their default are left out of the JSON (a third of a batch's
    bytes, and of the time to decode it); decoders fill them back in.
    """

    ts: Timestamp
    protocol: Protocol
    traffic_class: TrafficClass = "best-effort"
    destination: Label = ""
    source: SourceKind = "probe"
    probe: Label = ""
    outcome: Outcome = "ok"
    latency_ms: Millis | None = None
    #: HTTP probes: the response status code (also set when the outcome is `http-status`).
    status_code: Annotated[int, Meta(ge=100, le=599)] | None = None
    #: HTTP probes: time spent resolving the URL's host name, in ms.
    dns_ms: Millis | None = None
    #: Free text about a failure (the error seen), empty when nothing to say.
    detail: str = ""


class MeasurementBatch(Message, frozen=True, kw_only=True):
    """All measurements of one route from one agent in one round.

    Subject `pw.meas.<service>.<route>`.
    """

    agent: Name
    node: Name
    seq: Count
    sent: Timestamp
    service: Name
    route: Name
    items: list[Measurement]


# --- window statistics ----------------------------------------------------


class Lane(NamedTuple):
    """The one identity of a lane inside a route, in its one canonical order.

    Used as the key of every per-lane table (aggregator accumulators, enforcer
    machines, views). An empty `destination` / `probe` means "all of them":
    `Lane("tcp", "high")` is the aggregate lane of TCP, class high, from probes.
    """

    protocol: Protocol
    traffic_class: TrafficClass
    source: SourceKind = "probe"
    destination: str = ""
    probe: str = ""

    @property
    def aggregate(self) -> "Lane":
        """The aggregate lane this lane belongs to (destination and probe blank)."""
        return Lane(self.protocol, self.traffic_class, self.source)


class LaneStats(Struct, frozen=True, kw_only=True, gc=False):
    """Statistics of one lane over one window."""

    protocol: Protocol
    traffic_class: TrafficClass
    source: SourceKind = "probe"
    destination: str = ""
    probe: str = ""
    count: Count = 0
    errors: Count = 0
    error_pct: Percent = 0.0
    outcomes: dict[str, int] = {}
    latency_min_ms: float | None = None
    latency_max_ms: float | None = None
    latency_mean_ms: float | None = None
    latency_median_ms: float | None = None
    latency_p90_ms: float | None = None
    jitter_ms: float | None = None
    loss_pct: Percent = 0.0
    mos: float | None = None

    @property
    def lane(self) -> Lane:
        """This lane's identity."""
        return Lane(self.protocol, self.traffic_class, self.source, self.destination, self.probe)


class WindowStats(Message, frozen=True, kw_only=True):
    """A closed window of one route; subject `pw.stats.<service>.<route>`."""

    service: Name
    route: Name
    window_start: Timestamp
    window_end: Timestamp
    lanes: list[LaneStats]
    agents: list[str] = []
    late: Count = 0
    duplicates: Count = 0
    #: The aggregator replica that made the window (`pathwatch aggregator --replica`);
    #: every replica of a partition makes one, the enforcer judges one (a complete one).
    replica: ReplicaName = ""
    #: Since when (the replica's clock) it has received every measurement of its
    #: partition without a gap: after `window_start`, the window may lack some (partial).
    receiving_since: Timestamp = 0.0


FastKind = Literal[
    "consecutive-failures",
    "link-down",
    "link-up",
    "neighbour-unresolved",
    "neighbour-resolved",
]


class EvidenceHops(Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """When a piece of fast evidence passed each hop (Unix seconds; None: not on its way).

    Set by whoever passes the hop: the agent (`probe_sent`: the first missed
    attempt of the run; `loss_noticed`: its reply timeout; `published`), the
    aggregator when it forwards or produces the evidence (`forwarded`). The
    enforcer's decision is the `updated` time of the PathState it writes.
    """

    probe_sent: Timestamp | None = None
    loss_noticed: Timestamp | None = None
    published: Timestamp | None = None
    forwarded: Timestamp | None = None


class FastEvidence(Message, frozen=True, kw_only=True):
    """Early evidence that does not wait for the window; subject `pw.fast.<service>.<route>`.

    `reprobes`, `probe`, `destination` and `hops` were added within schema
    version 1: older senders leave them at their defaults, older readers ignore them.
    """

    service: Name
    route: Name
    ts: Timestamp
    kind: FastKind
    node: str = ""
    agent: str = ""
    interface: str = ""
    gateway: str = ""
    protocol: Protocol | None = None
    traffic_class: TrafficClass | None = None
    count: Count = 0
    detail: str = ""
    #: Source of the failing lane for consecutive-failures (None: not said).
    source: SourceKind | None = None
    #: consecutive-failures confirmed by the agent: the re-probes of the run that it took
    reprobes: Count = 0
    #: the failing probe and destination (consecutive-failures; empty: not said)
    probe: Label = ""
    destination: Label = ""
    hops: EvidenceHops | None = None


# --- path state (KV pathwatch-paths) --------------------------------------


class LaneState(Struct, frozen=True, kw_only=True, gc=False):
    """Judgement of one lane: its state, why, and the metrics of its last window."""

    protocol: Protocol
    traffic_class: TrafficClass
    source: SourceKind = "probe"
    destination: str = ""
    probe: str = ""
    state: PathStateName = "unknown"
    meets_sla: bool = False
    reason: str = ""
    since: Timestamp = 0.0
    metrics: LaneStats | None = None
    enforced: bool = True
    hold_down_until: Timestamp | None = None
    hold_down_multiplier: Count = 0
    healthy_since: Timestamp | None = None
    alarm_raised_at: Timestamp | None = None


class ProbeStatus(Struct, frozen=True, kw_only=True, gc=False):
    """Status of one named probe of a route (ICMP profile or plugin)."""

    name: str
    kind: str = "icmp"
    state: ProbeStateName = "unknown"
    reason: str = ""
    since: Timestamp = 0.0
    counters: dict[str, int] = {}
    enforced: bool = True
    hold_down_until: Timestamp | None = None
    hold_down_multiplier: Count = 0
    healthy_since: Timestamp | None = None
    alarm_raised_at: Timestamp | None = None
    protocol: Protocol | None = None


class PathState(Message, frozen=True, kw_only=True):
    """The truth about one service route; KV `pathwatch-paths`, key `<service>.<route>`."""

    service: Name
    route: Name
    node: str = ""
    interface: str = ""
    gateway: str | None = None
    cost: Count = 0
    state: PathStateName = "unknown"
    in_service: bool = True
    best_effort: bool = False
    meets_sla: bool = False
    enforcement: bool = True
    stale: bool = False
    reason: str = ""
    since: Timestamp = 0.0
    updated: Timestamp = 0.0
    hold_down_until: Timestamp | None = None
    hold_down_multiplier: Count = 0
    quality: float = 0.0
    lanes: list[LaneState] = []
    probes: list[ProbeStatus] = []
    #: The aggregator replica whose window was judged last.
    window_replica: ReplicaName = ""
    #: What brings the route back after a hold-down: its probes passing since the fault
    #: (`probe-verified`) or one window of real traffic (`organic-traffic`, also what a
    #: reader of an older enforcer's state gets).
    recovery: RecoveryRule = "organic-traffic"
    #: Why the route is still held down past a hold-down end (empty: not held).
    recovery_held: str = ""


PathEventKind = Literal["path-down", "path-up", "probation", "best-effort", "stale", "fresh"]


class PathEvent(Message, frozen=True, kw_only=True):
    """A transition of a route; stream PATHWATCH_EVENTS, subject `pw.event.<service>.<route>`."""

    id: str
    service: Name
    route: Name
    kind: PathEventKind
    ts: Timestamp
    state: PathStateName
    previous: PathStateName
    reason: str = ""
    in_service: bool = True
    hold_down_until: Timestamp | None = None


AlarmStatus = Literal["raised", "cleared"]
Severity = Literal["critical", "major", "minor", "info"]


class Alarm(Message, frozen=True, kw_only=True):
    """Raised when a path leaves service for a service/protocol/class, cleared when it returns."""

    id: str
    status: AlarmStatus
    severity: Severity = "major"
    service: str = ""
    route: str = ""
    protocol: Protocol | None = None
    traffic_class: TrafficClass | None = None
    cause: str = ""
    reason: str = ""
    agent: str = ""
    raised_at: Timestamp = 0.0
    cleared_at: Timestamp | None = None
    #: set on an update of a raised alarm (same id, new reason): when it was made
    updated_at: Timestamp | None = None


# --- commands --------------------------------------------------------------


class RouteCommand(Message, frozen=True, kw_only=True):
    """Withdraw or restore a route's next hop on one node; subject `pw.cmd.route.<node>`."""

    id: str
    action: Literal["withdraw", "restore"]
    node: Name
    service: Name
    route: Name
    prefixes: list[str] = []
    interface: str = ""
    gateway: str | None = None
    cost: Count = 0
    best_effort: bool = False
    reason: str = ""
    ts: Timestamp = 0.0


class HealCommand(Message, frozen=True, kw_only=True):
    """Tell clients connected through a route to reselect.

    Subject `pw.cmd.heal.<service>.<route>`.
    """

    id: str
    service: Name
    route: Name
    action: Literal["reselect"] = "reselect"
    reason: str = ""
    ts: Timestamp = 0.0


class LbSelectRequest(Message, frozen=True, kw_only=True):
    """Ask for the best route of a service; subject `pw.lb.select.<service>`."""

    service: Name
    exclude: list[str] = []
    protocol: Protocol | None = None
    traffic_class: TrafficClass | None = None


class LbSelectReply(Message, frozen=True, kw_only=True):
    """The answer to an LbSelectRequest; `route` is None when nothing is usable."""

    service: str
    route: str | None
    state: PathStateName = "unknown"
    best_effort: bool = False
    node: str = ""
    interface: str = ""
    gateway: str | None = None
    reason: str = ""
    error: str = ""


class AgentHeartbeat(Message, frozen=True, kw_only=True):
    """Liveness and counters of an agent; subject `pw.agent.hb.<node>.<agent>` (node
    `_all` for an agent of every node)."""

    agent: Name
    node: str
    version: str
    config_hash: str
    ts: Timestamp
    interval_s: Annotated[float, Meta(gt=0, le=3600)] = 5.0
    routes: list[str] = []
    counters: dict[str, int] = {}
    #: the revision of KV `pathwatch-config` the agent runs (0: its config came from a file)
    config_revision: Count = 0


class ProbeState(Message, frozen=True, kw_only=True):
    """Probe state set through the REST API for plugin probes; KV `pathwatch-probes`."""

    probe: Name
    state: Literal["up", "down"]
    service: str = ""
    route: str = ""
    node: str = ""
    interface: str = ""
    reason: str = ""
    set_at: Timestamp = 0.0
    expires_at: Timestamp | None = None


CounterKey = Annotated[str, Meta(max_length=128)]
#: A config digest (`LoadedConfig.digest`: 16 hex digits; longer ones are refused).
Digest = Annotated[str, Meta(max_length=64)]


class ConfigMark(Struct, frozen=True, kw_only=True, gc=False):
    """Which config a role runs: the digest of its text and, when it came from KV
    `pathwatch-config`, that revision (0: from a file)."""

    digest: Digest = ""
    revision: Count = 0


RoleCounters = Annotated[dict[CounterKey, Count], Meta(max_length=MAX_STATUS_COUNTERS)]


class RoleStatus(Message, frozen=True, kw_only=True):
    """What one role instance dropped and restarted; subject `pw.status.<role>.<instance>`.

    `dropped` keys are `<input>:<reason>` (input: the subject kind, KV bucket or
    route the message came in on), `restarts` keys name supervised consumers.
    The metrics exporter shows them (docs/metrics.md, "Drops").
    """

    role: Name
    instance: Name
    ts: Timestamp
    dropped: RoleCounters = {}
    restarts: RoleCounters = {}
    #: the host the instance runs on and the pathwatch version it runs
    host: Label = ""
    version: Label = ""
    #: the config it runs (None: a sender from before config revisions)
    config: ConfigMark | None = None


class EnforcerLease(Message, frozen=True, kw_only=True):
    """The active enforcer: KV `pathwatch-leases`, key `enforcer` (`subjects.LEASE_ENFORCER`).

    The holder renews it every TTL / 3; it is free once `expires` is past. Records
    written before `acquired` / `renewed` existed decode with them 0.
    """

    holder: str
    expires: Timestamp
    acquired: Timestamp = 0.0
    renewed: Timestamp = 0.0


class ConfigRecord(Message, frozen=True, kw_only=True):
    """One revision of a config: KV `pathwatch-config`, key the config's name.

    `text` is the file as written (YAML or TOML, by `format`), so the history reads
    as the files did; `digest` is its `LoadedConfig.digest`. A rollback is a new
    revision holding an old one's text, `rollback_of` naming that revision.
    """

    name: Name
    text: str
    format: Literal["yaml", "toml"]
    digest: Digest
    source: Label = ""
    pushed_by: Label = ""
    pushed_at: Timestamp
    rollback_of: Count | None = None
    comment: Label = ""


# --- notifications ---------------------------------------------------------

DeadLetterReason = Literal["rejected", "expired", "malformed"]


class DeadLetter(Message, frozen=True, kw_only=True):
    """An alarm message a notifier gave up on (docs/notifier.md, "Dead letters").

    Subject `pw.deadletter.<notifier>`, stream `PATHWATCH_DEAD_LETTERS`.
    `reason`: `rejected` (the receiver answered 4xx), `expired` (still failing
    after the notifier's `give-up-after`), `malformed` (not a valid Alarm).
    `alarm` is the decoded alarm (None when malformed, then `raw` holds the
    start of the payload); `detail` the receiver's answer or the decode error.
    """

    notifier: str
    kind: str
    reason: DeadLetterReason
    detail: str = ""
    attempts: Count = 0
    stream_seq: Count = 0
    subject: str = ""
    alarm: Alarm | None = None
    raw: str = ""
    first_attempt: Timestamp = 0.0
    dead_at: Timestamp = 0.0


#: Message types exported by `pathwatch schema export`.
MESSAGE_TYPES: tuple[type[Struct], ...] = (
    MeasurementBatch,
    WindowStats,
    FastEvidence,
    PathState,
    PathEvent,
    Alarm,
    RouteCommand,
    HealCommand,
    LbSelectRequest,
    LbSelectReply,
    AgentHeartbeat,
    ProbeState,
    RoleStatus,
    EnforcerLease,
    ConfigRecord,
    DeadLetter,
)
