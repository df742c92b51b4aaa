"""`run_enforcer`: the engine wired to NATS (inputs, KV, lease, outputs).

Every instance judges every input (hot standby), so a standby's state is the
active's state; only the lease holder writes KV, publishes and commands. Of the
copies of a window that the aggregator replicas publish, one is judged
(`enforcer.window_choice`). Given a `LiveConfig`, it follows every new config
revision (`Engine.reconfigure`) and its status reports the revision it runs.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from nats.aio.msg import Msg
from nats.js.errors import KeyDeletedError, KeyNotFoundError
from nats.js.kv import KeyValue

from enforcer.engine import Engine, probe_key_target
from enforcer.lease import Lease
from enforcer.reconcile import reconcile_store
from enforcer.sink import OutputSink
from enforcer.store import EnforcerStore
from enforcer.window_choice import WindowChoice
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configsource import LiveConfig
from pathwatch.runtime.heap import settle_heap
from pathwatch.runtime.status import RoleCounters, publish_status
from pathwatch.runtime.supervise import start_supervised
from schemas import subjects
from schemas.codec import DecodeError, decode_message, encode
from schemas.config import PathwatchConfig
from schemas.wire import (
    AgentHeartbeat,
    FastEvidence,
    LbSelectReply,
    LbSelectRequest,
    PathState,
    ProbeState,
    WindowStats,
)

log = logging.getLogger("pathwatch.enforcer")

T = TypeVar("T")
Handler = Callable[[Msg], Awaitable[None]]

TICK_SECONDS = 0.2
#: how long a stopping enforcer lets its sink write what is queued
SHUTDOWN_FLUSH_SECONDS = 2.0
#: Processor time a tick may spend rebuilding PathStates whose figures moved (a
#: quarter of the tick: at most a quarter of a core; the rest waits for the next tick).
REFRESH_BUDGET_SECONDS = TICK_SECONDS / 4
#: Config keys the enforcer reads only at start: its history store, its lease.
START_ONLY = ("store", "enforcer.lease_ttl")


async def restore_from_kv(engine: Engine, bus: Bus, paths: KeyValue) -> int:
    """Resume every configured route from its PathState in KV; returns how many."""
    restored = 0
    for key in await bus.kv_keys(subjects.KV_PATHS):
        try:
            entry = await paths.get(key)
            if entry.value and engine.restore(decode_message(entry.value, PathState)):
                restored += 1
        except (KeyNotFoundError, KeyDeletedError):
            continue
        except DecodeError as exc:
            engine.dropped[f"kv-path:{exc.reason}"] += 1
        except Exception as exc:
            log.warning("cannot restore %s: %s", key, exc)
    return restored


async def clear_disabled_probe_states(engine: Engine, bus: Bus, probes: KeyValue) -> None:
    """Probe state of routes whose probe-type is disabled is deleted."""
    for key in await bus.kv_keys(subjects.KV_PROBES):
        target = probe_key_target(key)
        if target is None:
            continue
        _, kind, where = target
        if kind == "route":
            specs = [engine.trackers[where].spec] if where in engine.trackers else []
        else:
            node, _, interface = where.partition(".")
            specs = [
                t.spec
                for t in engine.trackers.values()
                if t.spec.node == node and t.spec.interface == interface
            ]
        if specs and all(spec.probe_type == "disabled" for spec in specs):
            with contextlib.suppress(Exception):
                # kv_keys lists deleted keys too: only a live state gets a delete marker
                await probes.get(key)
                await probes.delete(key)


def _route_keys(engine: Engine) -> list[tuple[str, str]]:
    return [(t.spec.service, t.spec.route) for t in engine.trackers.values()]


def _reconfigure(
    engine: Engine,
    sink: OutputSink,
    windows: WindowChoice,
    config: PathwatchConfig,
    instance: str,
) -> None:
    before = set(engine.trackers)
    sink.submit(engine.reconfigure(config))
    windows.follow(_route_keys(engine))
    after = set(engine.trackers)
    log.info(
        "enforcer %s: %d routes (%d new, %d removed)",
        instance,
        len(after),
        len(after - before),
        len(before - after),
    )


async def run_enforcer(
    config: PathwatchConfig,
    bus: Bus,
    *,
    stop: asyncio.Event,
    instance: str,
    store_path: str | Path | None = None,
    clock: Callable[[], float] = time.time,
    live: LiveConfig | None = None,
) -> None:
    """Judge, decide and (when holding the lease) publish until `stop` is set; with
    `live`, it follows every new config revision."""
    engine = Engine(config, clock)
    paths = await bus.kv(subjects.KV_PATHS)
    probes = await bus.kv(subjects.KV_PROBES)
    leases = await bus.kv(subjects.KV_LEASES)
    store = await EnforcerStore.open(store_path) if store_path else None
    restored = await restore_from_kv(engine, bus, paths)
    if store is not None:
        await reconcile_store(store, bus, engine.dropped)  # a kill may have left a gap
        for alarm in await store.active_alarms():
            if alarm.cause == "agent-lost":
                engine.restore_agent_alarm(alarm)
    settle_heap()  # the engine's tables live as long as the process
    lease = Lease(leases, instance, config.enforcer.lease_ttl, clock)
    counters = RoleCounters("enforcer", instance, dropped=engine.dropped, live=live)
    windows = WindowChoice(_route_keys(engine), engine.dropped)
    sink = OutputSink(bus, paths, probes, store, lease, dropped=engine.dropped, stamp=windows.stamp)
    if live is not None:
        live.on_change(lambda new: _reconfigure(engine, sink, windows, new, instance))

    def guarded(label: str, handler: Handler) -> Handler:
        """`handler`, with anything it raises counted as `<label>:error` and logged."""

        async def run(msg: Msg) -> None:
            try:
                await handler(msg)
            except Exception:
                engine.dropped[f"{label}:error"] += 1
                log.exception("enforcer: %s message on %s failed", label, msg.subject)

        return run

    def decoded(msg: Msg, kind: type[T], label: str) -> T | None:
        try:
            return decode_message(msg.data, kind)
        except DecodeError as exc:
            engine.dropped[f"{label}:{exc.reason}"] += 1
            log.debug("dropped %s on %s: %s", label, msg.subject, exc)
            return None

    def judge_window(service: str, route: str, payload: bytes) -> None:
        try:
            outputs = engine.on_window_payload(service, route, payload)
        except DecodeError as exc:
            engine.dropped[f"stats:{exc.reason}"] += 1
            log.debug("dropped stats of %s.%s: %s", service, route, exc)
            return
        sink.submit(outputs)

    async def on_stats(msg: Msg) -> None:
        tokens = msg.subject.split(".")
        if len(tokens) != 4:
            window = decoded(msg, WindowStats, "stats")
            if window is not None:
                sink.submit(engine.on_window(window))
            return
        for payload in windows.offer(tokens[2], tokens[3], msg.data):
            judge_window(tokens[2], tokens[3], payload)

    async def on_fast(msg: Msg) -> None:
        evidence = decoded(msg, FastEvidence, "fast")
        if evidence is None:
            return
        if msg.subject != f"{subjects.FAST_PREFIX}.{evidence.service}.{evidence.route}":
            engine.dropped["fast:subject"] += 1
            return
        sink.submit(engine.on_fast(evidence))

    async def on_heartbeat(msg: Msg) -> None:
        heartbeat = decoded(msg, AgentHeartbeat, "heartbeat")
        if heartbeat is None:
            return
        if not subjects.heartbeat_matches(msg.subject, heartbeat.node, heartbeat.agent):
            # the subject is what the server's permissions bind to the agent's user
            engine.dropped["heartbeat:subject"] += 1
            return
        sink.submit(engine.on_heartbeat(heartbeat))

    async def on_select(msg: Msg) -> None:
        if not lease.held or not msg.reply:
            return
        request = decoded(msg, LbSelectRequest, "lb-select")
        service = msg.subject.rpartition(".")[2][:64]
        try:
            if request is None:
                reply = LbSelectReply(service=service, route=None, error="malformed request")
            else:
                reply = engine.select(request)
        except Exception:
            engine.dropped["lb-select:error"] += 1
            log.exception("enforcer: load-balancer request on %s failed", msg.subject)
            reply = LbSelectReply(service=service, route=None, error="internal error")
        await msg.respond(encode(reply))

    #: revision of each probe-state key whose value was refused: skipped, not re-read,
    #: when the watch starts again
    poisoned: dict[str, int] = {}

    def probe_entry(key: str, revision: int, operation: str | None, value: bytes) -> None:
        if operation in ("DEL", "PURGE") or not value:
            sink.submit(engine.on_probe_state(key, None))
            return
        if poisoned.get(key) == revision:
            return
        try:
            state = decode_message(value, ProbeState)
        except DecodeError as exc:
            engine.dropped[f"probe-state:{exc.reason}"] += 1
            if len(poisoned) >= 4096:
                poisoned.clear()
            poisoned[key] = revision
            return
        sink.submit(engine.on_probe_state(key, state))

    async def watch_probes() -> None:
        watcher = await probes.watchall()
        try:
            async for entry in watcher:
                if entry is None:
                    continue
                try:
                    probe_entry(entry.key, entry.revision or 0, entry.operation, entry.value or b"")
                except Exception:
                    engine.dropped["probe-state:error"] += 1
                    log.exception("enforcer: probe state %s failed", entry.key)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def ticker() -> None:
        next_lease = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_lease:
                was_held = lease.held
                held = await lease.refresh()
                next_lease = now + config.enforcer.lease_ttl / 3
                if held and not was_held:
                    log.info("enforcer %s: active", instance)
                    await clear_disabled_probe_states(engine, bus, probes)
                    sink.takeover(engine.path_states())
                elif was_held and not held:
                    log.warning("enforcer %s: lost the lease, standby", instance)
            for service, route, payload in windows.due():  # partial: no complete copy came
                judge_window(service, route, payload)
            sink.submit(engine.tick(refresh_budget=REFRESH_BUDGET_SECONDS))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=TICK_SECONDS)

    subscriptions = [
        await bus.nc.subscribe(subjects.STATS_ALL, cb=guarded("stats", on_stats)),
        await bus.nc.subscribe(subjects.FAST_ALL, cb=guarded("fast", on_fast)),
        await bus.nc.subscribe(subjects.HEARTBEAT_ALL, cb=guarded("heartbeat", on_heartbeat)),
        await bus.nc.subscribe(
            f"{subjects.LB_SELECT_PREFIX}.*", cb=guarded("lb-select", on_select)
        ),
    ]
    await bus.nc.flush()
    log.info(
        "enforcer %s: ready, %d routes, %d restored from KV",
        instance,
        len(engine.trackers),
        restored,
    )
    restarts = counters.restarts
    tasks = [
        start_supervised("enforcer-probes", watch_probes, stop, restarts),
        start_supervised("enforcer-ticker", ticker, stop, restarts),
        start_supervised(
            "enforcer-status", lambda: publish_status(bus, counters, stop), stop, restarts
        ),
        start_supervised("enforcer-sink", lambda: sink.run(stop), stop, restarts),
    ]
    try:
        await stop.wait()
    finally:
        for subscription in subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        try:
            # The probe watcher, the ticker and the status hold nothing that must finish;
            # a lease refresh in flight would wait out its NATS timeout.
            for task in tasks[:3]:
                task.cancel()
            # The sink writes what is queued, for a bounded time: with NATS gone it
            # cannot, and the standby, which computed the same outputs, publishes
            # them from its buffer when it takes over (deduplicated by message id).
            _, unfinished = await asyncio.wait(tasks, timeout=SHUTDOWN_FLUSH_SECONDS)
            if unfinished:
                log.warning(
                    "enforcer %s: stopping with outputs not written, %d batches queued (NATS %s)",
                    instance,
                    sink.queue.qsize(),
                    "connected" if bus.nc.is_connected else "unreachable",
                )
                for task in unfinished:
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # With NATS gone a standby waits for the TTL instead.
            if bus.nc.is_connected:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lease.release(), timeout=0.5)
        finally:
            # Even when cancelled: an open aiosqlite connection keeps the process alive.
            if store is not None:
                await asyncio.shield(store.close())
        if engine.dropped:
            log.info("enforcer %s dropped: %s", instance, dict(engine.dropped))
