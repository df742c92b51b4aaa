"""The healer of one client connection: monitor + liveness loop + decision table + hooks.

`run_healer(config, bus, *, stop, service, route, ...)` keeps a client's
connection to `service` on a working route (DESIGN.md, "Healing"):

* at start it requests its route (the reconnect hook points the client at it);
* data plane down (the liveness check failed, the route is reported down in
  KV, or a `HealCommand` on `pw.cmd.heal.<service>.<route>` names it):
  reselect through `pw.lb.select.<service>` excluding the failed route (a
  local best-effort choice when nobody answers), call the hook, rebuild the
  connection's address context for the new route;
* control plane down while the data plane works: keep everything; once it is
  back, re-request the same route;
* failed or unproven heals back off exponentially with jitter (no loops).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import nats.errors
from nats.aio.msg import Msg

from agents.healer.decision import Action, Backoff, HealPolicy
from agents.healer.hooks import Reconnect, ReconnectHook, RouteRepointHook
from agents.healer.liveness import LivenessLoop
from agents.healer.monitor import PathMonitor
from agents.healer.netns import NetnsLoop
from agents.healer.reselect import Selection, ask_load_balancer, local_choice
from agents.healer.settings import LivenessSettings
from agents.probe.icmp_engine import IcmpEngine
from agents.probe.liveness import Connection, IcmpLivenessCheck, LivenessCheck
from pathwatch.bus import Bus
from schemas import subjects
from schemas.codec import DecodeError, decode_message
from schemas.config import PathwatchConfig
from schemas.wire import HealCommand

log = logging.getLogger("pathwatch.healer")

#: Seconds between evaluations when nothing happens (changes wake it at once).
EVALUATE_EVERY = 0.2


class HealerError(ValueError):
    """Bad arguments: unknown service or route, no destination address."""


@dataclass(frozen=True)
class HealEvent:
    """One thing the healer did or saw (its timeline)."""

    ts: float
    kind: str
    route: str | None
    detail: str = ""


@dataclass
class HealerStats:
    reselects: int = 0
    rerequests: int = 0
    failed_heals: int = 0
    heal_commands: int = 0
    stale_results: int = 0
    liveness_failures: int = 0
    malformed: Counter[str] = field(default_factory=Counter)


def default_destinations(config: PathwatchConfig, service: str) -> list[str]:
    """The service's host addresses (/32 or /128 entries of `address`)."""
    found: list[str] = []
    for entry in config.services[service].address:
        address, _, length = entry.partition("/")
        if not length or length in ("32", "128"):
            found.append(address)
    return found


class Healer:
    """One client's healer; see the module docstring. `run(stop)` until `stop` is set."""

    def __init__(
        self,
        config: PathwatchConfig,
        bus: Bus,
        *,
        service: str,
        route: str,
        source: list[str] | None = None,
        destination: list[str] | None = None,
        check: LivenessCheck | None = None,
        hook: ReconnectHook | None = None,
        netns: str | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if service not in config.services:
            raise HealerError(f"unknown service {service!r}")
        self.service_config = config.services[service]
        if route not in self.service_config.service_routes:
            raise HealerError(f"service {service!r} has no route {route!r}")
        self.config = config
        self.bus = bus
        self.service = service
        self.route = route
        self.source = list(source or [])
        self.destination = list(destination or default_destinations(config, service))
        if not self.destination:
            raise HealerError(
                f"service {service!r} has no host address: pass --destination ADDRESS"
            )
        settings = config.healer
        self.settings = LivenessSettings.resolve(
            settings, environ if environ is not None else os.environ
        )
        self.netns = netns
        self.hook: ReconnectHook = hook or RouteRepointHook(
            table=settings.route_table,
            protocol=settings.route_protocol,
            metric=settings.route_metric,
            netns=netns,
        )
        self.check = check
        self.clock = clock
        self.policy = HealPolicy(
            clock, Backoff(settings.backoff_base, settings.backoff_max, settings.backoff_jitter)
        )
        self.stats = HealerStats()
        self.events: list[HealEvent] = []
        self.monitor = PathMonitor(bus, service, on_change=self._wake, clock=clock)
        self.liveness_ok: bool | None = None
        self.heal_requested = False
        self._changed = asyncio.Event()
        self.liveness_loop: LivenessLoop | None = None
        self.connection = self._connection_for(route)

    # --- context ------------------------------------------------------------------

    def _connection_for(self, route: str) -> Connection:
        """The connection's addresses on `route`: a fresh context, nothing carried over."""
        next_hop = self.service_config.service_routes[route].next_hop
        source = [next_hop.source_address] if next_hop.source_address else list(self.source)
        return Connection(source=source, destination=list(self.destination))

    def _context(self) -> tuple[int, Connection]:
        return self.policy.generation, self.connection

    def _record(self, kind: str, route: str | None, detail: str = "") -> None:
        self.events.append(HealEvent(self.clock(), kind, route, detail))
        log.info("healer %s: %s %s %s", self.service, kind, route or "-", detail)

    def _wake(self) -> None:
        self._changed.set()

    # --- evidence -----------------------------------------------------------------

    def _liveness(self, generation: int, alive: bool) -> None:
        if not self.policy.is_current(generation):
            self.stats.stale_results += 1  # about the previous endpoint: dropped
            return
        if not alive:
            self.stats.liveness_failures += 1
        elif self.liveness_ok is False or self.policy.failures:
            self._record("data-plane-up", self.route)
        self.liveness_ok = alive
        if alive and not self.monitor.reported_down(self.route):
            self.policy.data_plane_ok(generation)
        self._wake()

    async def _on_heal_command(self, msg: Msg) -> None:
        try:
            command = decode_message(msg.data, HealCommand)
        except DecodeError as exc:
            self.stats.malformed[f"heal-command-{exc.reason}"] += 1
            return
        if command.service != self.service or command.route != self.route:
            return
        self.stats.heal_commands += 1
        self.heal_requested = True
        self._record("heal-command", command.route, command.reason)
        self._wake()

    def data_up(self) -> bool:
        """The data plane of the current route works, as far as the healer knows."""
        if self.heal_requested or self.monitor.reported_down(self.route):
            return False
        if not self.settings.enabled:
            return True
        return self.liveness_ok is not False

    # --- actions ------------------------------------------------------------------

    async def _select(self) -> Selection:
        exclude = [self.route]
        selection: Selection | None = None
        if self.monitor.control_up():
            selection = await ask_load_balancer(
                self.bus, self.service, exclude, self.config.healer.select_timeout
            )
        if selection is None:
            selection = local_choice(self.service_config, set(exclude), self.monitor.reported_down)
        return selection

    def _reconnect(self, route: str, previous: str | None, same: bool, reason: str) -> Reconnect:
        next_hop = self.service_config.service_routes[route].next_hop
        return Reconnect(
            service=self.service,
            route=route,
            previous=previous,
            same=same,
            interface=next_hop.interface,
            gateway=next_hop.gateway_ip,
            destinations=list(self.destination),
            reason=reason,
        )

    async def _call_hook(self, reconnect: Reconnect) -> bool:
        try:
            await self.hook(reconnect)
        except Exception as exc:
            log.error("healer %s: reconnect hook failed: %s", self.service, exc)
            return False
        return True

    async def reselect(self, reason: str) -> None:
        self.policy.heal_started()
        selection = await self._select()
        if selection.route is None or selection.route == self.route:
            self.stats.failed_heals += 1
            self._record("no-route", self.route, selection.reason or "nothing else usable")
            self.policy.heal_finished(False)
            return
        previous = self.route
        if not await self._call_hook(self._reconnect(selection.route, previous, False, reason)):
            self.stats.failed_heals += 1
            self._record("heal-failed", selection.route, "reconnect hook failed")
            self.policy.heal_finished(False)
            return
        # the new endpoint's context replaces the old one: nothing stale is re-checked
        self.route = selection.route
        self.connection = self._connection_for(selection.route)
        self.liveness_ok = None
        self.heal_requested = False
        self.stats.reselects += 1
        via = selection.source + (", best-effort" if selection.best_effort else "")
        self._record("reselect", self.route, f"from {previous} ({reason}; {via})")
        self.policy.heal_finished(True)

    async def rerequest(self) -> None:
        if await self._call_hook(
            self._reconnect(self.route, self.route, True, "control plane back")
        ):
            self.stats.rerequests += 1
            self._record("rerequest-same", self.route, "control plane back")

    async def evaluate(self) -> Action:
        decision = self.policy.decide(self.monitor.control_up(), self.data_up())
        if decision.action is Action.RESELECT:
            await self.reselect(decision.reason)
        elif decision.action is Action.REREQUEST:
            await self.rerequest()
        return decision.action

    # --- main loop ----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        netns_loop: NetnsLoop | None = None
        tasks: list[asyncio.Task[None]] = []
        subscription = None
        try:
            check = self.check
            if self.settings.enabled and check is None:
                check = IcmpLivenessCheck(IcmpEngine())
            if self.netns is not None and self.check is None:
                netns_loop = NetnsLoop(self.netns).start()
            if not await self._call_hook(self._reconnect(self.route, None, False, "start")):
                self.stats.failed_heals += 1
            self._record("request", self.route, "start")
            with contextlib.suppress(nats.errors.Error):
                subscription = await self.bus.nc.subscribe(
                    f"{subjects.CMD_HEAL_PREFIX}.{self.service}.*", cb=self._on_heal_command
                )
            tasks.append(asyncio.create_task(self.monitor.run(stop), name="healer-monitor"))
            if self.settings.enabled and check is not None:
                self.liveness_loop = LivenessLoop(
                    check, self.settings, self._context, self._liveness, netns_loop
                )
                tasks.append(
                    asyncio.create_task(self.liveness_loop.run(stop), name="healer-liveness")
                )
            while not stop.is_set():
                self._changed.clear()
                await self.evaluate()
                waiters = [asyncio.create_task(e.wait()) for e in (stop, self._changed)]
                await asyncio.wait(
                    waiters, timeout=EVALUATE_EVERY, return_when=asyncio.FIRST_COMPLETED
                )
                for waiter in waiters:
                    waiter.cancel()
        finally:
            if tasks:
                # the monitor only reads: a KV resync in flight would wait out its NATS
                # timeout; the liveness loop gets up to 3 s to finish its check
                tasks[0].cancel()
                _, pending = await asyncio.wait(tasks, timeout=3 if stop.is_set() else 0)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if subscription is not None:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
            if netns_loop is not None:
                netns_loop.close()


async def run_healer(
    config: PathwatchConfig,
    bus: Bus,
    *,
    stop: asyncio.Event,
    service: str,
    route: str,
    source: list[str] | None = None,
    destination: list[str] | None = None,
    check: LivenessCheck | None = None,
    hook: ReconnectHook | None = None,
    netns: str | None = None,
) -> None:
    """Heal one client's connection to `service` (starting on `route`) until `stop` is set."""
    healer = Healer(
        config,
        bus,
        service=service,
        route=route,
        source=source,
        destination=destination,
        check=check,
        hook=hook,
        netns=netns,
    )
    await healer.run(stop)
