"""Prometheus exporter of the aggregator (prometheus-client, `/metrics`).

Everything is read at scrape time by one custom collector from plain state
(`MetricsState`): the last closed window of each route, the path states
watched in KV `pathwatch-paths`, the alarms replayed from `PATHWATCH_ALARMS`,
and the ingest counters. Nothing touches prometheus objects on the hot path.

Cardinality (docs/metrics.md): lane series exist only for lanes present in the
last closed window of a route, so they are bounded by routes x protocols (6)
x traffic classes (4) x sources (3); destinations and probes are labelled
only with `metrics.per-destination` (then add probes x probe addresses and
tracked passive destinations per route). Path series are one per configured
route; alarm series one per (service, cause, severity) with active alarms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import nats.errors
from nats.js.api import DeliverPolicy
from nats.js.errors import KeyDeletedError, KeyNotFoundError
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app
from prometheus_client.registry import Collector

from aggregator.ingest import IngestCounters
from pathwatch.bus import Bus, PathStateFollower
from pathwatch.listen import bind_listener
from pathwatch.readiness import LoopLiveness, Readiness
from schemas import subjects
from schemas.codec import DecodeError, decode_message
from schemas.wire import Alarm, EnforcerLease, LaneStats, PathState, WindowStats

log = logging.getLogger("pathwatch.aggregator.metrics")

LANE_LABELS = ("service", "route", "protocol", "traffic_class", "source", "destination", "probe")
PATH_LABELS = ("service", "route")
TTE_PROTOCOLS = frozenset({"tcp", "udp", "tls"})

#: (metric name, help, LaneStats attribute or a function of the lane)
_LANE_GAUGES: tuple[tuple[str, str, Callable[[LaneStats], float | None]], ...] = (
    ("pathwatch_lane_latency_min_ms", "Minimum latency of ok samples", lambda s: s.latency_min_ms),
    ("pathwatch_lane_latency_max_ms", "Maximum latency of ok samples", lambda s: s.latency_max_ms),
    ("pathwatch_lane_latency_mean_ms", "Mean latency of ok samples", lambda s: s.latency_mean_ms),
    (
        "pathwatch_lane_latency_median_ms",
        "Exact median latency of ok samples",
        lambda s: s.latency_median_ms,
    ),
    (
        "pathwatch_lane_latency_p90_ms",
        "Nearest-rank 90th percentile latency of ok samples",
        lambda s: s.latency_p90_ms,
    ),
    ("pathwatch_lane_jitter_ms", "Mean absolute RTT difference", lambda s: s.jitter_ms),
    ("pathwatch_lane_loss_ratio", "Unanswered / all samples", lambda s: s.loss_pct / 100.0),
    ("pathwatch_lane_error_ratio", "Not-ok / all samples", lambda s: s.error_pct / 100.0),
    ("pathwatch_lane_mos", "Mean opinion score (simplified E-model)", lambda s: s.mos),
    ("pathwatch_lane_samples", "Samples in the last window", lambda s: float(s.count)),
    (
        "pathwatch_lane_tte_mean_ms",
        "Mean time to establishment (tcp, udp, tls)",
        lambda s: s.latency_mean_ms if s.protocol in TTE_PROTOCOLS else None,
    ),
    (
        "pathwatch_lane_tte_max_ms",
        "Maximum time to establishment (tcp, udp, tls)",
        lambda s: s.latency_max_ms if s.protocol in TTE_PROTOCOLS else None,
    ),
)


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
                labels = [
                    stats.service,
                    stats.route,
                    lane.protocol,
                    lane.traffic_class,
                    lane.source,
                    lane.destination,
                    lane.probe,
                ]
                for family, value in families:
                    figure = value(lane)
                    if figure is not None:
                        family.add_metric(labels, figure)
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
        for path in list(self.state.paths.values()):
            labels = [path.service, path.route]
            up.add_metric(labels, 1.0 if path.state in ("up", "probation") else 0.0)
            in_service.add_metric(labels, float(path.in_service))
            meets_sla.add_metric(labels, float(path.meets_sla))
            best_effort.add_metric(labels, float(path.best_effort))
        yield from (up, in_service, meets_sla, best_effort)

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
        for key, count in sorted(counts.items()):
            active.add_metric(list(key), float(count))
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


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No line per scrape."""


class _Server(ThreadingWSGIServer):
    """prometheus-client's threaded WSGI server on a socket bound by `bind_listener`."""

    def __init__(self, sock: socket.socket, app: WSGIApplication) -> None:
        super().__init__(sock.getsockname(), _QuietHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        sock.setblocking(True)
        self.server_address = sock.getsockname()
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]
        self.setup_environ()
        self.set_app(app)


def _json(start_response: StartResponse, status: int, body: object) -> list[bytes]:
    payload = json.dumps(body).encode()
    reason = "OK" if status == 200 else "Service Unavailable"  # the only two it sends
    start_response(f"{status} {reason}", [("Content-Type", "application/json")])
    return [payload]


class MetricsServer:
    """`/metrics` (prometheus-client) plus `/healthz` (the event loop still runs) and
    `/readyz` (`readiness`), served in a thread."""

    def __init__(self, state: MetricsState, readiness: Readiness | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(PathwatchCollector(state))
        self.readiness = readiness or Readiness()
        self.liveness = LoopLiveness()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def _app(self) -> WSGIApplication:
        metrics = make_wsgi_app(self.registry)

        def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/healthz":
                return _json(start_response, *self.liveness.report())
            if path == "/readyz":
                return _json(start_response, *self.readiness.report())
            scrape: Iterable[bytes] = metrics(environ, start_response)
            return scrape

        return app

    def start(self, listen: str) -> MetricsServer:
        """Serve on `listen`; ListenError (address, cause, remedy) when it cannot."""
        self._server = _Server(bind_listener(listen, "metrics.listen"), self._app())
        self.port = int(self._server.server_address[1])
        self.liveness.start()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.liveness.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None


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
        except DecodeError:
            state.lease = None
            state.malformed_paths["lease"] += 1
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
        except DecodeError:
            state.malformed_alarms += 1

    subscription = await bus.js.subscribe(
        subjects.ALARM_ALL,
        cb=on_alarm,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
