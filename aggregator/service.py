"""`run_aggregator`: the aggregator on NATS (docs/internals.md, "Component entry points").

Subscribes to its partition's share of `pw.meas.*` (no queue group: each
replica of a partition gets all of it), feeds every message to `Aggregator`,
publishes consecutive-failure evidence on `pw.fast.<service>.<route>` at once,
clock-skew alarms on `pw.alarm._system.<agent>` through JetStream, and every
closed window on
`pw.stats.<service>.<route>`; closed windows also go to the SQLite history
and the Prometheus exporter when those are configured. Windows that have
ended are ripened during their lateness grace, so the close at the deadline
has little left to do. Every window names its replica and since when that replica
has received without a gap (`Coverage`), so the enforcer can take a complete one.
Given a `LiveConfig`, it follows every new revision: new or changed routes get new
windows, removed ones stop (`Aggregator.reconfigure`); its status reports the
revision it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import msgspec
from nats.aio.msg import Msg
from prometheus_client.registry import Collector

from aggregator.core import SYSTEM_SERVICE, Aggregator
from aggregator.coverage import Coverage
from aggregator.history import HistoryStore
from aggregator.metrics import (
    MetricsServer,
    MetricsState,
    watch_alarms,
    watch_lease,
    watch_paths,
)
from aggregator.partition import subscriptions
from aggregator.role_metrics import watch_status
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configsource import LiveConfig
from pathwatch.runtime.heap import settle_heap
from pathwatch.runtime.readiness import Readiness, nats_connected
from pathwatch.runtime.status import RoleCounters, publish_status
from pathwatch.runtime.supervise import start_supervised
from schemas import subjects
from schemas.codec import encode
from schemas.config import PathwatchConfig
from schemas.fit import fit
from schemas.limits import PAYLOAD_HEADROOM_BYTES
from schemas.wire import WindowStats

log = logging.getLogger("pathwatch.aggregator")

TICK_S = 0.05
#: windows closed between two yields to the event loop
CLOSE_SLICE = 200


#: Config keys the aggregator reads only at start.
START_ONLY = ("store", "metrics")


def _reconfigure(aggregator: Aggregator, config: PathwatchConfig, partition: int) -> None:
    done = aggregator.reconfigure(config)
    log.info(
        "aggregator partition %d: %d routes (%d new, %d changed, %d removed; %d open windows"
        " dropped)",
        partition,
        len(aggregator.book.routes),
        len(done.added),
        len(done.changed),
        len(done.removed),
        done.dropped_windows,
    )


async def run_aggregator(
    config: PathwatchConfig,
    bus: Bus,
    *,
    stop: asyncio.Event,
    partition: int = 0,
    partitions: int = 1,
    store_path: str | None = None,
    metrics_listen: str | None = None,
    metrics_collectors: Sequence[Collector] = (),
    clock: Callable[[], float] = time.time,
    on_window: Callable[[WindowStats], None] | None = None,
    ready: asyncio.Event | None = None,
    core: Aggregator | None = None,
    replica: str = "",
    live: LiveConfig | None = None,
) -> None:
    """Run one aggregator partition (as replica `replica`) until `stop` is set; with
    `live`, it follows every new revision of the config (`config` is then `live.config`).

    `clock`, `on_window` (called with each closed window), `ready` (set once
    the subscriptions are in place on the server) and `core` (a prepared
    Aggregator whose counters the caller watches) are for tests and benchmarks;
    `metrics_collectors` are served on the same `/metrics` (`pathwatch up`).
    """
    aggregator = core or Aggregator(config, partition=partition, partitions=partitions)
    settle_heap()  # config and tables live as long as the process
    nc = bus.nc
    alarms: asyncio.Queue[bytes] = asyncio.Queue()
    alarm_subjects: dict[bytes, str] = {}

    role = RoleCounters(
        "aggregator", "-".join(filter(None, [f"partition-{partition}", replica])), live=live
    )
    coverage = Coverage(clock)
    if live is not None:
        live.on_change(lambda new: _reconfigure(aggregator, new, partition))

    async def on_measurements(msg: Msg) -> None:
        try:
            aggregator.handle(msg.subject, msg.data, clock())
        except Exception:  # a bug must not lose the rest of the message's outputs
            role.dropped["meas:error"] += 1
            log.exception("aggregator: message on %s failed", msg.subject)
        if aggregator.fast_out:
            for evidence in aggregator.take_fast():
                await nc.publish(subjects.fast(evidence.service, evidence.route), encode(evidence))
        if aggregator.alarm_out:
            for alarm in aggregator.take_alarms():
                payload = encode(alarm)
                alarm_subjects[payload] = subjects.alarm(SYSTEM_SERVICE, alarm.agent)
                alarms.put_nowait(payload)

    async def publish_alarms() -> None:
        while not stop.is_set():
            payload = await alarms.get()
            subject = alarm_subjects.pop(payload)
            try:
                await bus.js.publish(subject, payload)
            except Exception as error:
                log.warning("cannot publish alarm on %s: %s", subject, error)

    metrics_state = MetricsState(
        aggregator.counters,
        partition=partition,
        per_destination=config.metrics.per_destination,
        malformed_paths=role.dropped,
    )
    subscribed = ready or asyncio.Event()
    metrics_server: MetricsServer | None = None
    restarts = role.restarts

    def supervised(name: str, consumer: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        return start_supervised(f"aggregator-{name}", consumer, stop, restarts)

    if metrics_listen:  # before the store opens: a taken port leaves nothing open
        readiness = (
            Readiness()
            .require("NATS connection", nats_connected(bus))
            .require("measurement subscriptions", subscribed.is_set)
        )
        metrics_server = MetricsServer(metrics_state, readiness, metrics_collectors).start(
            metrics_listen
        )
        log.info("metrics on http://%s/metrics", metrics_listen)
    store: HistoryStore | None = None
    if store_path:
        store = await HistoryStore(store_path, config.store.retention).open()
    tasks = [
        supervised("alarms", publish_alarms),
        supervised("status", lambda: publish_status(bus, role, stop)),
    ]
    if metrics_listen:
        tasks.append(supervised("paths", lambda: watch_paths(bus, metrics_state, stop)))
        tasks.append(supervised("alarm-watch", lambda: watch_alarms(bus, metrics_state, stop)))
        tasks.append(supervised("lease", lambda: watch_lease(bus, metrics_state, stop)))
        tasks.append(
            supervised(
                "status-watch", lambda: watch_status(bus, metrics_state.roles, stop, role.dropped)
            )
        )
    if store is not None:
        history = store
        tasks.append(supervised("history", lambda: history.run(stop)))

    subscriptions_made = [
        await nc.subscribe(
            subject,
            cb=on_measurements,
            pending_msgs_limit=1_000_000,
            pending_bytes_limit=1 << 30,
        )
        for subject in subscriptions(partition, partitions)
    ]
    await nc.flush()
    coverage.start(bus)
    subscribed.set()
    log.info(
        "aggregator partition %d/%d: %d routes, subjects %s",
        partition,
        partitions,
        len(aggregator.book.routes),
        ", ".join(subscriptions(partition, partitions)),
    )

    async def publish_closed(now: float) -> None:
        # close in slices so a burst of closing windows does not stall ingest
        while closed := aggregator.close_due(now, CLOSE_SLICE):
            await publish_windows(closed)
            await asyncio.sleep(0)

    async def ripen_ended() -> None:
        # work out the lanes of ended windows during their lateness grace, in slices,
        # and go back to closing as soon as a close is due
        while aggregator.ripen_due(clock(), CLOSE_SLICE):
            await asyncio.sleep(0)
            due = aggregator.book.next_close()
            if due is not None and due <= clock():
                return

    async def publish_windows(closed: list[WindowStats]) -> None:
        limit = nc.max_payload - PAYLOAD_HEADROOM_BYTES
        stamp = {"replica": replica, "receiving_since": coverage.since(nc.is_connected)}
        for closed_stats in closed:
            stats = msgspec.structs.replace(closed_stats, **stamp)
            # fits the server's max payload: per-destination lanes trimmed if need be
            data, trimmed = fit(stats, limit)
            if trimmed:
                role.dropped[f"output-window:{'trimmed' if data else 'too-big'}"] += 1
            try:
                if data is not None:
                    await nc.publish(subjects.stats(stats.service, stats.route), data)
            except Exception as error:
                role.dropped["output-window:error"] += 1
                log.warning("cannot publish window of %s.%s: %s", stats.service, stats.route, error)
            metrics_state.window_closed(stats)
            if store is not None:
                store.add(stats)
            if on_window is not None:
                on_window(stats)

    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=TICK_S)
            await publish_closed(clock())
            await ripen_ended()
    finally:
        coverage.stop(bus)
        for subscription in subscriptions_made:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if metrics_server is not None:
            metrics_server.stop()
        if store is not None:
            # Even when cancelled: an open aiosqlite connection keeps the process alive.
            await asyncio.shield(store.close())
