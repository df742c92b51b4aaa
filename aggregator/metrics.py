"""Prometheus exporter of the aggregator (prometheus-client, `/metrics`).

Everything is read at scrape time by one custom collector from plain state
(`MetricsState`): the last closed window of each route, the path states
watched in KV `pathwatch-paths`, the alarms replayed from `PATHWATCH_ALARMS`,
and the ingest counters. Nothing touches prometheus objects on the hot path.

Cardinality (docs/metrics.md): lane series exist only for lanes present in the
last closed window of a route, so they are bounded by routes x protocols (probe kinds + link)
x traffic classes (4) x sources (3); destinations and probes are labelled
only with `metrics.per-destination` (then add probes x probe addresses and
tracked passive destinations per route). Path series are one per configured
route; alarm series one per (service, cause, severity) with active alarms.

Names and units follow the Prometheus conventions (`promtool check metrics`
passes): seconds, ratios 0-1, `_total` counters; a label without a value
(the aggregate lane's destination and probe, a system alarm's service) is
left out of the series rather than exported empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import nats.errors
from nats.js.api import DeliverPolicy
from nats.js.errors import KeyDeletedError, KeyNotFoundError
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aggregator.ingest import IngestCounters
from aggregator.role_metrics import RoleBook, role_families
from pathwatch.runtime.bus import Bus, PathStateFollower
from pathwatch.runtime.metrics_http import MetricsHttpServer
from pathwatch.runtime.readiness import Readiness
from schemas import subjects
from schemas.codec import DecodeError, decode_message
from schemas.limits import MAX_ALARMS
from schemas.probekinds import TTE_PROTOCOLS, protocol_titles
from schemas.wire import Alarm, EnforcerLease, LaneStats, PathState, WindowStats

log = logging.getLogger("pathwatch.aggregator.metrics")

#: Labels of lane series; `destination` and `probe` only on per-destination lanes.
LANE_LABELS = ("service", "route", "protocol", "traffic_class", "source", "destination", "probe")
PATH_LABELS = ("service", "route")


def _seconds(ms: float | None) -> float | None:
    """Milliseconds (the wire's unit) to seconds (Prometheus's base unit)."""
    return None if ms is None else ms / 1000.0


#: (metric name, help, the figure of a lane in base units: seconds, ratios 0-1)
_LANE_GAUGES: tuple[tuple[str, str, Callable[[LaneStats], float | None]], ...] = (
    (
        "pathwatch_lane_latency_min_seconds",
        "Minimum latency of ok samples",
        lambda s: _seconds(s.latency_min_ms),
    ),
    (
        "pathwatch_lane_latency_max_seconds",
        "Maximum latency of ok samples",
        lambda s: _seconds(s.latency_max_ms),
    ),
    (
        "pathwatch_lane_latency_mean_seconds",
        "Mean latency of ok samples",
        lambda s: _seconds(s.latency_mean_ms),
    ),
    (
        "pathwatch_lane_latency_median_seconds",
        "Exact median latency of ok samples",
        lambda s: _seconds(s.latency_median_ms),
    ),
    (
        "pathwatch_lane_latency_p90_seconds",
        "Nearest-rank 90th percentile latency of ok samples",
        lambda s: _seconds(s.latency_p90_ms),
    ),
    (
        "pathwatch_lane_jitter_seconds",
        "Mean absolute RTT difference",
        lambda s: _seconds(s.jitter_ms),
    ),
    ("pathwatch_lane_loss_ratio", "Unanswered / all samples", lambda s: s.loss_pct / 100.0),
    ("pathwatch_lane_error_ratio", "Not-ok / all samples", lambda s: s.error_pct / 100.0),
    ("pathwatch_lane_mos", "Mean opinion score (simplified E-model)", lambda s: s.mos),
    ("pathwatch_lane_samples", "Samples in the last window", lambda s: float(s.count)),
    (
        "pathwatch_lane_tte_mean_seconds",
        f"Mean time to establishment ({protocol_titles(TTE_PROTOCOLS)})",
        lambda s: _seconds(s.latency_mean_ms) if s.protocol in TTE_PROTOCOLS else None,
    ),
    (
        "pathwatch_lane_tte_max_seconds",
        f"Maximum time to establishment ({protocol_titles(TTE_PROTOCOLS)})",
        lambda s: _seconds(s.latency_max_ms) if s.protocol in TTE_PROTOCOLS else None,
    ),
)


def add_gauge_sample(family: Metric, labels: dict[str, str], value: float) -> None:
    """Add a sample to a gauge family, leaving out the labels without a value."""
    family.add_sample(family.name, {k: v for k, v in labels.items() if v}, value)


@dataclass
class MetricsState:
    """What the exporter shows; written by the event loop, read by the scrape thread."""

    counters: IngestCounters
    partition: int = 0
    per_destination: bool = False
    windows: dict[tuple[str, str], WindowStats] = field(default_factory=dict)
    paths: dict[str, PathState] = field(default_factory=dict)
    alarms: dict[str, Alarm] = field(default_factory=dict)
    malformed_alarms: int = 0
    malformed_paths: Counter[str] = field(default_factory=Counter)
    lease: EnforcerLease | None = None
    #: the latest drop and restart counters of every role instance (`watch_status`)
    roles: RoleBook = field(default_factory=RoleBook)

    def window_closed(self, stats: WindowStats) -> None:
        self.windows[(stats.service, stats.route)] = stats

    def path_changed(self, key: str, state: PathState | None) -> None:
        if state is None:
            self.paths.pop(key, None)
        else:
            self.paths[key] = state

    def alarm_seen(self, alarm: Alarm) -> None:
        if alarm.status == "raised":
            self.alarms[alarm.id] = alarm
            if len(self.alarms) > MAX_ALARMS:  # the oldest raised goes first
                del self.alarms[next(iter(self.alarms))]
        else:
            self.alarms.pop(alarm.id, None)


class PathwatchCollector(Collector):
    """Builds every metric family from a MetricsState at scrape time."""

    def __init__(self, state: MetricsState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        yield from self._lanes()
        yield from self._paths()
        yield from self._alarms()
        yield from self._lease()
        yield from self._ingest()
        yield from role_families(self.state.roles)

    def _lanes(self) -> Iterator[Metric]:
        families = [
            (GaugeMetricFamily(name, text, labels=LANE_LABELS), value)
            for name, text, value in _LANE_GAUGES
        ]
        window_end = GaugeMetricFamily(
            "pathwatch_window_end_timestamp_seconds",
            "End of the last closed window of the route",
            labels=PATH_LABELS,
        )
        per_destination = self.state.per_destination
        for stats in list(self.state.windows.values()):
            window_end.add_metric([stats.service, stats.route], stats.window_end)
            for lane in stats.lanes:
                if not per_destination and (lane.destination or lane.probe):
                    continue
                labels = {
                    "service": stats.service,
                    "route": stats.route,
                    "protocol": lane.protocol,
                    "traffic_class": lane.traffic_class,
                    "source": lane.source,
                    "destination": lane.destination,
                    "probe": lane.probe,
                }
                for family, value in families:
                    figure = value(lane)
                    if figure is not None:
                        add_gauge_sample(family, labels, figure)
        for family, _ in families:
            yield family
        yield window_end

    def _paths(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "pathwatch_path_up", "1 when the route is up or in probation", labels=PATH_LABELS
        )
        in_service = GaugeMetricFamily(
            "pathwatch_path_in_service", "1 when the route carries traffic", labels=PATH_LABELS
        )
        meets_sla = GaugeMetricFamily(
            "pathwatch_path_meets_sla", "1 when the route meets its SLA", labels=PATH_LABELS
        )
        best_effort = GaugeMetricFamily(
            "pathwatch_path_best_effort",
            "1 when kept in service as best effort",
            labels=PATH_LABELS,
        )
        recovery_held = GaugeMetricFamily(
            "pathwatch_path_recovery_held",
            "1 when the route is held down past a hold-down end: its probes have not passed"
            " since the fault (probe-verified recovery)",
            labels=PATH_LABELS,
        )
        window_from = GaugeMetricFamily(
            "pathwatch_path_window_replica",
            "1 for the aggregator replica whose window of the route was judged last",
            labels=(*PATH_LABELS, "replica"),
        )
        for path in list(self.state.paths.values()):
            labels = [path.service, path.route]
            up.add_metric(labels, 1.0 if path.state in ("up", "probation") else 0.0)
            in_service.add_metric(labels, float(path.in_service))
            meets_sla.add_metric(labels, float(path.meets_sla))
            best_effort.add_metric(labels, float(path.best_effort))
            recovery_held.add_metric(labels, float(bool(path.recovery_held)))
            if path.window_replica:
                window_from.add_metric([*labels, path.window_replica], 1.0)
        yield from (up, in_service, meets_sla, best_effort, recovery_held, window_from)

    def _alarms(self) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            "pathwatch_alarms_active",
            "Alarms raised and not cleared",
            labels=("service", "cause", "severity"),
        )
        counts: dict[tuple[str, str, str], int] = {}
        for alarm in list(self.state.alarms.values()):
            key: tuple[str, str, str] = (alarm.service, alarm.cause, alarm.severity)
            counts[key] = counts.get(key, 0) + 1
        for (service, cause, severity), count in sorted(counts.items()):
            labels = {"service": service, "cause": cause, "severity": severity}
            add_gauge_sample(active, labels, float(count))
        yield active

    def _lease(self) -> Iterator[Metric]:
        expires = GaugeMetricFamily(
            "pathwatch_enforcer_lease_expires_timestamp_seconds",
            "Unix time the active enforcer's lease expires (absent: no lease)",
            labels=("holder",),
        )
        lease = self.state.lease
        if lease is not None:
            expires.add_metric([lease.holder], lease.expires)
        yield expires

    def _ingest(self) -> Iterator[Metric]:
        counters = self.state.counters
        partition = [str(self.state.partition)]
        simple = (
            ("pathwatch_ingest_messages", "Messages received", counters.messages),
            ("pathwatch_ingest_batches", "Batches accepted", counters.batches),
            ("pathwatch_ingest_measurements", "Measurements accepted", counters.measurements),
            ("pathwatch_ingest_late", "Measurements dropped as late", counters.dropped["late"]),
            (
                "pathwatch_ingest_future",
                "Measurements dropped for a timestamp in the future",
                counters.dropped["future"],
            ),
            (
                "pathwatch_ingest_duplicate",
                "Batches dropped as duplicates",
                counters.dropped["duplicate"],
            ),
        )
        for name, text, value in simple:
            family = CounterMetricFamily(name, text, labels=("partition",))
            family.add_metric(partition, value)
            yield family
        malformed = CounterMetricFamily(
            "pathwatch_ingest_malformed",
            "Messages dropped, by reason",
            labels=("partition", "reason"),
        )
        for reason, value in counters.dropped.items():
            if reason not in ("late", "future", "duplicate"):
                malformed.add_metric([*partition, reason], value)
        yield malformed


class MetricsServer(MetricsHttpServer):
    """`/metrics` of the aggregator's exporter (`PathwatchCollector`), with `/healthz` and
    `/readyz`, on the shared bounded server (`pathwatch.runtime.metrics_http`)."""

    def __init__(
        self,
        state: MetricsState,
        readiness: Readiness | None = None,
        others: Sequence[Collector] = (),
    ) -> None:
        """`others`: collectors of other parts of the process served alongside
        (`pathwatch up` adds the notifier's)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(PathwatchCollector(state))
        for collector in others:
            registry.register(collector)
        super().__init__(registry, readiness)


async def watch_paths(bus: Bus, state: MetricsState, stop: asyncio.Event) -> None:
    """Follow KV `pathwatch-paths` into `state.paths` until stop (resync after reconnects)."""
    resync = asyncio.Event()
    follower = PathStateFollower(
        bus,
        on_change=lambda _key: setattr(state, "paths", follower.states),
        on_broken=resync.set,
        malformed=state.malformed_paths,
        name="metrics",
    )

    async def on_reconnect() -> None:
        resync.set()

    bus.reconnect_callbacks.append(on_reconnect)
    resync.set()
    try:
        while not stop.is_set():
            if resync.is_set():
                resync.clear()
                try:
                    await follower.resync()
                except (nats.errors.Error, TimeoutError, OSError) as exc:
                    log.warning("metrics: cannot follow %s yet: %s", subjects.KV_PATHS, exc)
                    resync.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        with contextlib.suppress(ValueError):
            bus.reconnect_callbacks.remove(on_reconnect)
        await follower.stop()


async def watch_lease(
    bus: Bus, state: MetricsState, stop: asyncio.Event, interval: float = 1.0
) -> None:
    """Poll the enforcer's lease (KV `pathwatch-leases`) into `state.lease` until stop."""
    while not stop.is_set():
        try:
            kv = await bus.kv(subjects.KV_LEASES)
            entry = await kv.get(subjects.LEASE_ENFORCER)
            state.lease = decode_message(entry.value or b"", EnforcerLease)
        except (KeyNotFoundError, KeyDeletedError):
            state.lease = None
        except DecodeError as exc:
            state.lease = None
            state.malformed_paths[f"kv-lease:{exc.reason}"] += 1
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            log.debug("metrics: lease poll failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def watch_alarms(bus: Bus, state: MetricsState, stop: asyncio.Event) -> None:
    """Replay and follow the PATHWATCH_ALARMS stream into `state.alarms` until stop."""

    async def on_alarm(msg: object) -> None:
        data: bytes = msg.data  # type: ignore[attr-defined]
        try:
            state.alarm_seen(decode_message(data, Alarm))
        except DecodeError as exc:
            state.malformed_alarms += 1
            state.malformed_paths[f"alarm:{exc.reason}"] += 1

    subscription = await bus.js.subscribe(
        subjects.ALARM_ALL,
        stream=subjects.STREAM_ALARMS,
        cb=on_alarm,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
