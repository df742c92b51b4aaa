"""The agent process: probe this node's routes and publish what was measured.

`run_agent(config, bus, *, stop, agent_name, node=None, config_hash="")` runs
an `Agent` until `stop` is set. Per route, a scheduler starts a round
whenever one of its probes is due; a round runs those probes against every
target (probe address x traffic class, pinned to the route) concurrently and
publishes one `MeasurementBatch` on `pw.meas.<service>.<route>`. Sequence
numbers increase per agent (they start at the start time in ms, so they keep
increasing across restarts). Link and neighbour changes of the next hops go
out at once as `FastEvidence` on `pw.fast.<service>.<route>`. Targets of
probes in confirm mode (`agents.probe.watch`) notice a missed reply after
their reply timeout, re-probe at once and publish `consecutive-failures`
evidence on the same subject as soon as the run is confirmed. A heartbeat
with the counters goes on `pw.agent.hb.<node>.<agent>` every `heartbeat_interval` s.
When the config's `passive` section is enabled, a `PassiveSource` also
learns from the sessions conntrack sees and publishes them (source
`passive`) on the same subjects, one batch per route per passive round.

While NATS is unreachable, messages wait in a bounded `Outbox` (oldest
dropped first, counted as `dropped`). `reload(config)` swaps the plan: rounds
in flight finish and publish; new rounds follow the new config. Given a
`LiveConfig` (`live`), the heartbeat reports the config revision it runs and
the revisions it refused (`config:<reason>` counters). When `stop`
is set the agent drains: no new rounds, the rounds in flight finish and are
published, the outbox is flushed and a last heartbeat is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from dataclasses import dataclass

from agents.outbox import Outbox
from agents.passive.source import PassiveSource, route_choices
from agents.probe.address_sla import summarize
from agents.probe.confirm import Confirmed
from agents.probe.icmp_engine import IcmpEngine
from agents.probe.link import LinkWatcher
from agents.probe.registry import EXCHANGES
from agents.probe.watch import TargetWatch
from agents.probeplan import PlannedProbe, RoutePlan, build_plan, link_watches, preflight
from pathwatch.runtime.aio import wait_any
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configsource import LiveConfig
from schemas import subjects
from schemas.codec import encode
from schemas.config import PathwatchConfig
from schemas.wire import (
    PROTOCOLS,
    AgentHeartbeat,
    EvidenceHops,
    FastEvidence,
    Measurement,
    MeasurementBatch,
)

log = logging.getLogger("pathwatch.agent")

AGENT_VERSION = "0.1.0"


@dataclass(frozen=True)
class AgentOptions:
    """Tunables of an agent that are not part of the shared config."""

    heartbeat_interval: float = 5.0
    outbox_capacity: int = 1000
    privileged_icmp: bool | None = None
    link_netns: str | None = None


class Agent:
    """One probing agent bound to one Bus; see the module docstring."""

    def __init__(
        self,
        config: PathwatchConfig,
        bus: Bus,
        *,
        agent_name: str,
        node: str | None = None,
        config_hash: str = "",
        options: AgentOptions | None = None,
        live: LiveConfig | None = None,
    ) -> None:
        self.bus = bus
        self.live = live
        self.agent_name = agent_name
        self.node = node
        self.options = options or AgentOptions()
        self.engine = IcmpEngine(privileged=self.options.privileged_icmp)
        self.outbox = Outbox(self.options.outbox_capacity)
        self.counters: Counter[str] = Counter()
        self.seq = int(time.time() * 1000)
        self.config = config
        self.config_hash = config_hash
        self.plans = build_plan(config, node, self.engine)
        preflight(self.plans)
        self.watches = self._watches(self.plans)
        self._schedulers: list[asyncio.Task[None]] = []
        self._rounds: set[asyncio.Task[None]] = set()
        self._watcher_stop = asyncio.Event()
        self._watcher_task: asyncio.Task[None] | None = None
        self.link_watcher: LinkWatcher | None = None
        self._running = False
        self._flush_lock = asyncio.Lock()
        self.passive: PassiveSource | None = None
        self._passive_stop = asyncio.Event()
        self._passive_task: asyncio.Task[None] | None = None
        if live is not None:
            live.on_change(self.reload)

    # --- configuration ----------------------------------------------------

    def reload(self, config: PathwatchConfig, config_hash: str = "") -> None:
        """Apply a new config; rounds in flight finish under the old one.

        Raises (and keeps the current plan) when the new config cannot be
        probed, e.g. an unknown plugin.
        """
        plans = build_plan(config, self.node, self.engine)
        preflight(plans)
        self.config = config
        self.config_hash = config_hash
        self.plans = plans
        for watches in self.watches.values():
            for watch in watches:
                watch.stop_reprobes()
        self.watches = self._watches(plans)
        self.counters["reloads"] += 1
        if self._running:
            self._stop_schedulers()
            self._start_schedulers()
            self._restart_watcher()
            self._restart_passive()
        log.info("agent %s: config reloaded (%d routes)", self.agent_name, len(plans))

    # --- publishing ---------------------------------------------------------

    async def _send(self, subject: str, payload: bytes) -> None:
        """Publish now when connected, else keep it in the outbox."""
        nc = self.bus.nc
        if nc.is_connected and not self.outbox:
            try:
                await nc.publish(subject, payload)
                return
            except Exception as exc:
                log.warning("publish on %s failed: %s; queued", subject, exc)
        self.outbox.put(subject, payload)
        if nc.is_connected:
            await self.flush_outbox()

    async def flush_outbox(self) -> None:
        """Send what waits in the outbox, in order, while the connection holds."""
        async with self._flush_lock:
            nc = self.bus.nc
            while self.outbox and nc.is_connected:
                entry = self.outbox.peek()
                if entry is None:
                    break
                try:
                    await nc.publish(*entry)
                except Exception as exc:
                    log.warning("outbox flush stopped: %s", exc)
                    break
                self.outbox.pop()
                if entry[0].startswith(subjects.MEAS_PREFIX + "."):
                    self.counters["batches_published"] += 1

    async def _publish_batch(self, plan: RoutePlan, items: list[Measurement]) -> None:
        self.seq += 1
        batch = MeasurementBatch(
            agent=self.agent_name,
            node=plan.node,
            seq=self.seq,
            sent=time.time(),
            service=plan.service,
            route=plan.route,
            items=items,
        )
        subject = subjects.meas(plan.service, plan.route)
        queued_before = self.outbox.queued
        await self._send(subject, encode(batch))
        if self.outbox.queued == queued_before:
            self.counters["batches_published"] += 1

    async def _publish_passive(self, service: str, route: str, items: list[Measurement]) -> None:
        """Publish one chunk of passive measurements of a route as a MeasurementBatch."""
        key = f"{service}.{route}"
        plan = next((p for p in self.plans if p.key == key), None)
        if plan is None:
            self.counters["passive_unplanned"] += len(items)
            return
        self.counters["measurements"] += len(items)
        await self._publish_batch(plan, items)

    async def _publish_fast(self, evidence: FastEvidence) -> None:
        if not self._running:
            # A stopping agent's failures are no evidence: in `pathwatch up` the targets on
            # this host (the API, say) stop beside it, and a path must not go down for that.
            self.counters["fast_withheld_stopping"] += 1
            return
        self.counters["fast_events"] += 1
        await self._send(subjects.fast(evidence.service, evidence.route), encode(evidence))

    # --- confirm mode ---------------------------------------------------------

    def _watches(self, plans: list[RoutePlan]) -> dict[tuple[str, str], list[TargetWatch]]:
        """A TargetWatch per target of every probe in confirm mode, by (route, probe)."""
        watches: dict[tuple[str, str], list[TargetWatch]] = {}
        for plan in plans:
            for probe in plan.probes:
                if probe.confirm is None:
                    continue
                watches[(plan.key, probe.name)] = [
                    TargetWatch(
                        target,
                        EXCHANGES[probe.kind],
                        probe.profile,
                        probe.confirm,
                        functools.partial(self._publish_confirmed, plan, probe),
                        counters=self.counters,
                    )
                    for target in probe.targets
                ]
        return watches

    async def _publish_confirmed(
        self,
        plan: RoutePlan,
        probe: PlannedProbe,
        watch: TargetWatch,
        confirmed: Confirmed,
        outcome: str,
    ) -> None:
        """Publish the consecutive-failures evidence of a confirmed run at once."""
        wall_now, mono_now = time.time(), time.monotonic()

        def wall(at: float) -> float:
            return wall_now - (mono_now - at)

        target = watch.target
        await self._publish_fast(
            FastEvidence(
                service=plan.service,
                route=plan.route,
                ts=wall(confirmed.confirmed),
                kind="consecutive-failures",
                node=plan.node,
                agent=self.agent_name,
                protocol=probe.kind,
                traffic_class=target.traffic_class,
                count=confirmed.misses,
                source="probe",
                reprobes=confirmed.reprobes,
                probe=probe.name,
                destination=target.address,
                detail=(
                    f"{confirmed.misses} consecutive failures ({outcome}) on {probe.kind}"
                    f"/{target.traffic_class} probe probe={probe.name}"
                    f" destination={target.address}, confirmed by {confirmed.reprobes} re-probes"
                ),
                hops=EvidenceHops(
                    probe_sent=wall(confirmed.first_sent),
                    loss_noticed=wall(confirmed.noticed),
                    published=time.time(),
                ),
            )
        )

    def heartbeat(self) -> AgentHeartbeat:
        counters = dict(self.counters)
        counters.update(self.engine.counters.as_dict())
        if self.passive is not None:
            counters.update(self.passive.counter_values())
        counters["dropped"] = self.outbox.dropped
        counters["outbox"] = len(self.outbox)
        config_hash, revision = self.config_hash, 0
        if self.live is not None:
            counters.update(self.live.counted())
            config_hash, revision = self.live.current.loaded.digest, self.live.current.kv_revision
        return AgentHeartbeat(
            agent=self.agent_name,
            node=self.node or "",
            version=AGENT_VERSION,
            config_hash=config_hash,
            ts=time.time(),
            interval_s=self.options.heartbeat_interval,
            routes=[plan.key for plan in self.plans],
            counters=counters,
            config_revision=revision,
        )

    async def _send_heartbeat(self) -> None:
        if not self.bus.nc.is_connected:
            return
        try:
            heartbeat = self.heartbeat()
            await self.bus.nc.publish(
                subjects.heartbeat(heartbeat.node, heartbeat.agent), encode(heartbeat)
            )
            self.counters["heartbeats"] += 1
        except Exception as exc:
            log.warning("heartbeat failed: %s", exc)

    # --- probing ------------------------------------------------------------

    async def _run_probe(
        self, plan: RoutePlan, probe: PlannedProbe, started: float
    ) -> list[Measurement]:
        deadline = probe.deadline_after(started)
        watches = self.watches.get((plan.key, probe.name))
        results = await asyncio.gather(
            *(
                (watch.probe(deadline) for watch in watches)
                if watches is not None
                else (probe.func(target, probe.profile, deadline) for target in probe.targets)
            ),
            return_exceptions=True,
        )
        items: list[Measurement] = []
        for target, result in zip(probe.targets, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                self.counters["probe_errors"] += 1
                log.warning(
                    "probe %s (%s) to %s failed: %r", probe.name, probe.kind, target.address, result
                )
                if probe.kind in PROTOCOLS:
                    items.append(
                        target.measurement(
                            probe.kind,
                            time.time(),
                            "error",
                            detail=f"probe failed: {result!r}"[:200],
                        )
                    )
                continue
            items.extend(result)
            if probe.sla is not None and result:
                summary = summarize(target.address, result, probe.sla)
                for test in summary.exceeded:
                    self.counters[f"{probe.kind}_exceeded_by_{test.replace('-', '_')}"] += 1
        return items

    async def _round(self, plan: RoutePlan, due: list[PlannedProbe]) -> None:
        started = time.monotonic()
        batches = await asyncio.gather(*(self._run_probe(plan, probe, started) for probe in due))
        items = [item for batch in batches for item in batch]
        self.counters["rounds"] += 1
        self.counters["measurements"] += len(items)
        if items:
            await self._publish_batch(plan, items)

    def _start_round(self, plan: RoutePlan, due: list[PlannedProbe]) -> None:
        task = asyncio.create_task(self._round(plan, due), name=f"round {plan.key}")
        self._rounds.add(task)
        task.add_done_callback(self._round_done)

    def _round_done(self, task: asyncio.Task[None]) -> None:
        self._rounds.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.counters["round_errors"] += 1
            log.error("round failed", exc_info=task.exception())

    async def _schedule(self, plan: RoutePlan) -> None:
        """Start a round whenever probes of `plan` are due; never waits for rounds."""
        now = time.monotonic()
        next_due = {probe.name: now for probe in plan.probes}
        by_name = {probe.name: probe for probe in plan.probes}
        while True:
            now = time.monotonic()
            due = [by_name[name] for name, at in next_due.items() if at <= now]
            if due:
                for probe in due:
                    while next_due[probe.name] <= now:
                        next_due[probe.name] += probe.interval
                self._start_round(plan, due)
            await asyncio.sleep(max(min(next_due.values()) - time.monotonic(), 0.0))

    def _start_schedulers(self) -> None:
        self._schedulers = [
            asyncio.create_task(self._schedule(plan), name=f"schedule {plan.key}")
            for plan in self.plans
            if plan.probes
        ]

    def _stop_schedulers(self) -> None:
        for task in self._schedulers:
            task.cancel()
        self._schedulers = []

    def _restart_watcher(self) -> None:
        self._watcher_stop.set()
        self._watcher_stop = asyncio.Event()
        watches = link_watches(self.config, self.node)
        self.link_watcher = LinkWatcher(
            watches,
            self._publish_fast,
            node=self.node or "",
            agent=self.agent_name,
            netns=self.options.link_netns,
        )
        self._watcher_task = asyncio.create_task(self._watch(self.link_watcher, self._watcher_stop))

    def _restart_passive(self) -> None:
        """(Re)start the passive source for the current config, if it is enabled."""
        self._passive_stop.set()
        self._passive_stop = asyncio.Event()
        self.passive = None
        self._passive_task = None
        if not self.config.passive.enabled:
            return
        routes = route_choices(self.config, self.node)
        if not routes:
            return
        self.passive = PassiveSource(self.config, routes, self._publish_passive)
        self._passive_task = asyncio.create_task(
            self._follow(self.passive, self._passive_stop), name="passive"
        )

    @staticmethod
    async def _follow(source: PassiveSource, stop: asyncio.Event) -> None:
        try:
            await source.run(stop)
        except Exception:
            log.exception("passive source failed")
            source.ready.set()

    @staticmethod
    async def _watch(watcher: LinkWatcher, stop: asyncio.Event) -> None:
        try:
            await watcher.run(stop)
        except Exception:
            log.exception("link watcher failed")
            watcher.ready.set()

    # --- lifecycle ------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Probe until `stop` is set, then drain."""
        self._running = True
        self.bus.reconnect_callbacks.append(self.flush_outbox)
        self._restart_watcher()
        self._restart_passive()
        self._start_schedulers()
        changed = self.live.changed if self.live is not None else asyncio.Event()
        try:
            while not stop.is_set():
                changed.clear()
                await self._send_heartbeat()
                if self.outbox and self.bus.nc.is_connected:
                    await self.flush_outbox()
                await wait_any((stop, changed), self.options.heartbeat_interval)
        finally:
            await self._drain()

    async def _drain(self) -> None:
        self._running = False
        self._stop_schedulers()
        for watches in self.watches.values():
            for watch in watches:
                watch.stop_reprobes()
        self._watcher_stop.set()
        self._passive_stop.set()
        if self._rounds:
            await asyncio.wait(set(self._rounds), timeout=25)
        for watches in self.watches.values():
            for watch in watches:
                await watch.close()
        if self._watcher_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._watcher_task, 2)
        if self._passive_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._passive_task, 5)
        if self.bus.nc.is_connected:
            await self.flush_outbox()
            await self._send_heartbeat()
            with contextlib.suppress(Exception):
                await self.bus.nc.flush(timeout=2)
        with contextlib.suppress(ValueError):
            self.bus.reconnect_callbacks.remove(self.flush_outbox)
        self.engine.close()
        log.info("agent %s: drained (%s)", self.agent_name, dict(self.counters))


async def run_agent(
    config: PathwatchConfig,
    bus: Bus,
    *,
    stop: asyncio.Event,
    agent_name: str,
    node: str | None = None,
    config_hash: str = "",
    options: AgentOptions | None = None,
    live: LiveConfig | None = None,
) -> None:
    """Run an agent until `stop` is set (node None: probe every route); with `live`, it
    applies every new revision of it."""
    agent = Agent(
        config,
        bus,
        agent_name=agent_name,
        node=node,
        config_hash=config_hash,
        options=options,
        live=live,
    )
    await agent.run(stop)
