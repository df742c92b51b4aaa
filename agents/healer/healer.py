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
* failed or unproven heals back off exponentially with jitter (no loops); a route
  coming back into service in KV, or a heal command naming the current route, ends
  the wait at once;
* a liveness result counts only for the connection it checked, and only while that
  connection is current (`agents.healer.attribution`): a heal is never undone by
  evidence about the previous endpoint.

What it does is in `events` (and, with `sink`, a JSON line per event; see
`agents.healer.events`) and in `stats` (served by `agents.healer.metrics`); its drops
and the config it runs go out as the `healer` role's status. Given a `LiveConfig`, it
follows every new config revision (`reconfigure`: the routes of
its service); one without its service or the route the client is on is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import nats.errors
from nats.aio.msg import Msg

from agents.healer.attribution import Attribution, Stamp
from agents.healer.decision import Action, Backoff, HealPolicy
from agents.healer.events import EventLog, HealEvent
from agents.healer.hooks import Reconnect, ReconnectHook, RouteRepointHook
from agents.healer.liveness_loop import LivenessLoop
from agents.healer.monitor import PathMonitor
from agents.healer.netns import NetnsLoop
from agents.healer.reselect import Selection, ask_load_balancer, local_choice
from agents.healer.settings import LivenessSettings
from agents.probe.datapath_check import Connection, IcmpLivenessCheck, LivenessCheck
from agents.probe.icmp_engine import IcmpEngine
from pathwatch.runtime.aio import wait_any
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configsource import LiveConfig
from pathwatch.runtime.status import RoleCounters, publish_status
from schemas import subjects
from schemas.codec import DecodeError, decode_message
from schemas.config import PathwatchConfig
from schemas.wire import HealCommand, PathState

log = logging.getLogger("pathwatch.healer")

#: Seconds between evaluations when nothing happens (changes wake it at once).
EVALUATE_EVERY = 0.2
#: Config keys the healer reads only at start (its liveness and repoint settings).
START_ONLY = ("healer",)


class HealerError(ValueError):
    """Bad arguments: unknown service or route, no destination address."""


@dataclass
class HealerStats:
    """What the healer counted (the counters of `agents.healer.metrics`)."""

    reselects: int = 0
    rerequests: int = 0
    failed_heals: int = 0
    heal_commands: int = 0
    stale_results: int = 0
    liveness_passes: int = 0
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


def service_level(state: PathState | None) -> int:
    """0: out of service (or only kept as best-effort), 1: in service, 2: proven up."""
    if state is None or not state.in_service or state.best_effort:
        return 0
    return 2 if state.state == "up" else 1


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
        sink: Callable[[bytes], None] | None = None,
        live: LiveConfig | None = None,
    ) -> None:
        if service not in config.services:
            raise HealerError(f"unknown service {service!r}")
        self.service_config = config.services[service]
        if route not in self.service_config.service_routes:
            raise HealerError(f"service {service!r} has no route {route!r}")
        self.config = config
        self.bus = bus
        self.service = service
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
        #: drops as a role status (pathwatch.runtime.status), refreshed before each publication
        self.role = RoleCounters("healer", f"{service}-{socket.gethostname()}", live=live)
        self.log = EventLog(service, clock, sink)
        self.monitor = PathMonitor(bus, service, on_change=self._wake, clock=clock)
        self.attribution = Attribution(route, self._connection_for(route))
        self.liveness_ok: bool | None = None
        self.heal_requested = False
        self.backing_off = False
        self.levels = dict.fromkeys(self.service_config.service_routes, 0)
        self._changed = asyncio.Event()
        self.liveness_loop: LivenessLoop | None = None
        if live is not None:
            live.on_change(self.reconfigure)

    def reconfigure(self, config: PathwatchConfig) -> None:
        """Take a new config: the routes of the service (HealerError, refusing it, when
        the service or the route the client is on is gone)."""
        service_config = config.services.get(self.service)
        if service_config is None:
            raise HealerError(f"it has no service {self.service!r}")
        if self.route not in service_config.service_routes:
            raise HealerError(
                f"service {self.service!r} has no route {self.route!r}, the one the client is on"
            )
        self.config = config
        self.service_config = service_config
        self.levels = {route: self.levels.get(route, 0) for route in service_config.service_routes}
        self._wake()

    # --- context ------------------------------------------------------------------

    @property
    def route(self) -> str:
        """The route the client is on."""
        return self.attribution.current.route

    @property
    def connection(self) -> Connection:
        """The client's connection (its addresses) on that route."""
        return self.attribution.current.connection

    @property
    def events(self) -> list[HealEvent]:
        return self.log.events

    def _connection_for(self, route: str) -> Connection:
        """The connection's addresses on `route`: a fresh context, nothing carried over."""
        next_hop = self.service_config.service_routes[route].next_hop
        source = [next_hop.source_address] if next_hop.source_address else list(self.source)
        return Connection(source=source, destination=list(self.destination))

    def _wake(self) -> None:
        self._changed.set()

    def stale_results(self) -> int:
        """Liveness results about a previous connection: dropped, or abandoned in flight."""
        abandoned = self.liveness_loop.abandoned if self.liveness_loop is not None else 0
        return self.stats.stale_results + abandoned

    def refresh_role_status(self) -> None:
        """Copy the drops into `role` as `<input>:<reason>` (`heal-command-json` becomes
        `heal-command:json`), for the role status the aggregator's /metrics shows."""
        self.role.dropped.clear()
        for key, count in self.malformed().items():
            source, _, reason = key.rpartition("-")
            self.role.dropped[f"{source}:{reason}"] += count

    def malformed(self) -> dict[str, int]:
        """Dropped messages by reason: heal commands here, KV values in the monitor (each
        copied in one step, as a scrape reads them from another thread)."""
        merged = Counter(dict(self.stats.malformed))
        merged.update(dict(self.monitor.malformed))
        return dict(merged)

    # --- evidence -----------------------------------------------------------------

    def liveness_result(self, stamp: Stamp, alive: bool) -> None:
        """A liveness round taken under `stamp` ended; it counts only if still current."""
        if not self.attribution.counts(stamp):
            self.stats.stale_results += 1  # about a previous connection: dropped
            return
        if alive:
            self.stats.liveness_passes += 1
        else:
            self.stats.liveness_failures += 1
        if alive is not self.liveness_ok:
            self.log.record("liveness-pass" if alive else "liveness-fail", stamp.route)
        self.liveness_ok = alive
        if alive and not self.policy.healing and not self.monitor.reported_down(stamp.route):
            self.policy.data_plane_ok()
            self._backoff_ended("the route works")
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
        self.log.record("heal-command", command.route, command.reason)
        if command.ts > self.policy.last_heal_at:  # news: no reselect has acted on it yet
            self._end_backoff("heal command")
        self._wake()

    def _routes_back(self) -> None:
        """End the backoff when another route came back into service in KV or was proven
        up there (a rise in `service_level`): news, not a standing state, so a route
        that is in service but dead for this client cannot make the healer loop."""
        levels = {route: service_level(self.monitor.state_of(route)) for route in self.levels}
        back = sorted(
            route
            for route, level in levels.items()
            if level > self.levels[route] and route != self.route
        )
        self.levels = levels
        if back:
            self._end_backoff(f"{', '.join(back)} back in service")

    def control_up(self) -> bool:
        return self.monitor.control_up()

    def data_up(self) -> bool:
        """The data plane of the current route works, as far as the healer knows."""
        if self.heal_requested or self.monitor.reported_down(self.route):
            return False
        if not self.settings.enabled:
            return True
        return self.liveness_ok is not False

    # --- backoff ------------------------------------------------------------------

    def _backoff_started(self) -> None:
        if self.policy.in_backoff():
            self.backing_off = True
            self.log.record(
                "backoff-start",
                self.route,
                f"{self.policy.backoff_remaining():.2f} s after {self.policy.failures} heal(s)",
                seconds=round(self.policy.backoff_remaining(), 3),
                failures=self.policy.failures,
            )

    def _backoff_ended(self, why: str) -> None:
        if self.backing_off and not self.policy.in_backoff():
            self.backing_off = False
            self.log.record("backoff-end", self.route, why)

    def _end_backoff(self, why: str) -> None:
        self.policy.end_backoff()
        self._backoff_ended(why)

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

    async def _move(self, route: str, reason: str) -> bool:
        """Point the client at `route`; the new connection and its epoch become current
        together (no liveness round can pair the new epoch with the old connection)."""
        self.attribution.moving()
        if not await self._call_hook(self._reconnect(route, self.route, False, reason)):
            self.attribution.stayed()
            return False
        self.attribution.moved(route, self._connection_for(route))
        self.liveness_ok = None
        self.heal_requested = False
        if self.liveness_loop is not None:
            self.liveness_loop.restart()
        return True

    async def reselect(self, reason: str) -> None:
        self.policy.heal_started()
        selection = await self._select()
        previous = self.route
        if selection.route is None or selection.route == previous:
            self.stats.failed_heals += 1
            self.log.record("no-route", previous, selection.reason or "nothing else usable")
        elif not await self._move(selection.route, reason):
            self.stats.failed_heals += 1
            self.log.record("heal-failed", selection.route, "reconnect hook failed")
        else:
            self.stats.reselects += 1
            via = selection.source + (", best-effort" if selection.best_effort else "")
            self.log.record(
                "reselect", self.route, f"from {previous} ({reason}; {via})", previous=previous
            )
        self.policy.heal_finished(self.route != previous)
        self._backoff_started()

    async def rerequest(self) -> None:
        self.attribution.moving()
        done = await self._call_hook(
            self._reconnect(self.route, self.route, True, "control plane back")
        )
        self.attribution.stayed()
        if done:
            self.stats.rerequests += 1
            self.log.record("rerequest-same", self.route, "control plane back")

    async def evaluate(self) -> Action:
        self._routes_back()
        self._backoff_ended("expired")
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
            self.log.record("request", self.route, "start")
            with contextlib.suppress(nats.errors.Error):
                subscription = await self.bus.nc.subscribe(
                    f"{subjects.CMD_HEAL_PREFIX}.{self.service}.*", cb=self._on_heal_command
                )
            tasks.append(asyncio.create_task(self.monitor.run(stop), name="healer-monitor"))
            tasks.append(
                asyncio.create_task(
                    publish_status(self.bus, self.role, stop, refresh=self.refresh_role_status),
                    name="healer-status",
                )
            )
            if self.settings.enabled and check is not None:
                self.liveness_loop = LivenessLoop(
                    check, self.settings, self.attribution.stamp, self.liveness_result, netns_loop
                )
                tasks.append(
                    asyncio.create_task(self.liveness_loop.run(stop), name="healer-liveness")
                )
            while not stop.is_set():
                self._changed.clear()
                await self.evaluate()
                await wait_any((stop, self._changed), EVALUATE_EVERY)
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
    live: LiveConfig | None = None,
) -> None:
    """Heal one client's connection to `service` (starting on `route`) until `stop` is set;
    with `live`, it follows every new revision of the config."""
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
        live=live,
    )
    await healer.run(stop)
