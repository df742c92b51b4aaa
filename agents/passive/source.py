"""The agent's passive source: sessions of real traffic seen by conntrack.

`PassiveSource` follows conntrack events (`agents.passive.follower`) and ICMP
unreachable errors (`agents.passive.icmp_errors`) in the host or in
`passive.netns`, places each new flow (`agents.passive.classifier`), tracks
it to its outcome (`agents.passive.tracker`), and every `round-interval` s
resolves the route of each finished session and hands the measurements of
each route to `publish` (at most `max-batch-items` at a time). See
docs/passive.md for the definitions and the kernel settings it needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from pyroute2 import AsyncIPRoute

from agents.passive.classifier import Egress, FlowClassifier, RouteChoice, RouteResolver
from agents.passive.events import CtEvent
from agents.passive.follower import ConntrackFollower, conntrack_settings
from agents.passive.icmp_errors import IcmpErrorWatcher
from agents.passive.rounds import RoundBuffer, chunks, to_measurement
from agents.passive.tracker import FlowKey, SessionOutcome, SessionTracker
from schemas.config import PathwatchConfig
from schemas.wire import Measurement

log = logging.getLogger("pathwatch.agent.passive")

PublishItems = Callable[[str, str, list[Measurement]], Awaitable[None]]


class KernelRoutes:
    """`ip route get <dst> from <src>` through pyroute2, in the followed namespace."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self._ipr: AsyncIPRoute | None = None
        self._names: dict[int, str] = {}

    async def lookup(self, source: str, destination: str) -> Egress | None:
        if self._ipr is None:
            self._ipr = AsyncIPRoute(netns=self.netns) if self.netns else AsyncIPRoute()
        routes = await self._ipr.route("get", dst=destination, src=source)
        for route in routes:
            index = route.get("oif")
            name = None
            if index is not None:
                name = self._names.get(index)
                if name is None:
                    for link in await self._ipr.link("get", index=index):
                        name = link.get("ifname")
                    if name is not None:
                        self._names[index] = name
            return Egress(interface=name, gateway=route.get("gateway"))
        return None

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None


class PassiveSource:
    """Learns session outcomes per route; see the module docstring."""

    def __init__(
        self,
        config: PathwatchConfig,
        routes: list[RouteChoice],
        publish: PublishItems,
        *,
        lookup: Callable[[str, str], Awaitable[Egress | None]] | None = None,
    ) -> None:
        self.config = config
        self.passive = config.passive
        self.routes = routes
        self.publish = publish
        self.kernel_routes = KernelRoutes(self.passive.netns)
        self.resolver = RouteResolver(
            routes,
            lookup or self.kernel_routes.lookup,
            ttl=self.passive.route_cache_ttl,
        )
        self.classifier = FlowClassifier(config, {choice.service for choice in routes})
        self.tracker = SessionTracker(
            self.classifier,
            tcp_timeout=self.passive.tcp_timeout,
            udp_timeout=self.passive.udp_timeout,
            max_sessions=self.passive.max_sessions,
            protocols=tuple(self.passive.protocols),
        )
        self.buffer = RoundBuffer()
        self.follower = ConntrackFollower(
            self._on_event,
            self._on_gap,
            netns=self.passive.netns,
            wanted=self.tracker.pending.__contains__,
        )
        self.icmp = IcmpErrorWatcher(self._on_icmp_error, netns=self.passive.netns)
        self.counters: Counter[str] = Counter()
        self.ready = asyncio.Event()

    # --- callbacks from the readers (synchronous, on the loop) -------------------

    def _on_event(self, event: CtEvent, now: float, wall: float) -> None:
        outcome = self.tracker.on_event(event, now, wall)
        if outcome is not None:
            self.buffer.add(outcome)

    def _on_gap(self) -> None:
        self.tracker.forget_pending()

    def _on_icmp_error(self, flow: FlowKey, now: float, wall: float) -> None:
        outcome = self.tracker.on_icmp_error(flow, now, wall)
        if outcome is not None:
            self.buffer.add(outcome)

    # --- rounds ----------------------------------------------------------------------

    async def flush(self) -> int:
        """Publish what finished since the last round; returns the measurements sent."""
        self.buffer.extend(self.tracker.expire(time.monotonic(), time.time()))
        outcomes = self.buffer.take()
        if not outcomes:
            return 0
        per_route: dict[tuple[str, str], list[Measurement]] = {}
        routes_of: dict[tuple[str, str, str], str | None] = {}
        for outcome in outcomes:
            key = (outcome.label.service, outcome.source, outcome.destination)
            if key not in routes_of:
                routes_of[key] = await self.resolver.route(*key)
            route = routes_of[key]
            if route is None:
                self.counters["unrouted"] += 1
                continue
            per_route.setdefault((outcome.label.service, route), []).append(to_measurement(outcome))
        sent = 0
        for (service, route), items in per_route.items():
            for chunk in chunks(items, self.passive.max_batch_items):
                await self.publish(service, route, chunk)
                self.counters["batches"] += 1
                sent += len(chunk)
        self.counters["published"] += sent
        return sent

    def counter_values(self) -> dict[str, int]:
        """Counters for the heartbeat, prefixed `passive_`."""
        values = Counter(self.counters)
        values.update(self.tracker.counters)
        values["events"] = self.follower.datagrams
        values["overruns"] = self.follower.overruns
        values["icmp_errors"] = self.icmp.errors_seen
        values["pending"] = len(self.tracker)
        values["route_lookups"] = self.resolver.lookups
        return {f"passive_{name}": count for name, count in values.items()}

    async def run(self, stop: asyncio.Event) -> None:
        """Follow until `stop` is set, then publish the last round."""
        loop = asyncio.get_running_loop()
        settings = await conntrack_settings(self.passive.netns)
        if settings.get("nf_conntrack_events") in ("0", "missing"):
            log.warning(
                "passive: conntrack events are off or conntrack is not loaded in %s (%s);"
                " nothing will be learned until it is",
                self.passive.netns or "the host",
                settings,
            )
        if settings.get("nf_conntrack_timestamp") != "1":
            log.info(
                "passive: net.netfilter.nf_conntrack_timestamp is not 1 in %s: session latency"
                " is timed when the agent reads each event, not by the kernel (docs/passive.md)",
                self.passive.netns or "the host",
            )
        self.follower.start(loop)
        try:
            if self.passive.icmp_errors:
                try:
                    self.icmp.start(loop)
                except OSError as exc:
                    log.warning("passive: no ICMP error watcher (%s)", exc)
            self.ready.set()
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.passive.round_interval)
                await self.flush()
        finally:
            self.follower.stop(loop)
            self.icmp.stop(loop)
            with contextlib.suppress(Exception):
                await self.flush()
            self.kernel_routes.close()
            self.ready.set()


def route_choices(config: PathwatchConfig, node: str | None) -> list[RouteChoice]:
    """The routes of this node that passive learning measures (detection enabled)."""
    return [
        RouteChoice(
            service=service_name,
            route=route_name,
            interface=route.next_hop.interface,
            gateway=route.next_hop.gateway_ip,
            source_address=route.next_hop.source_address,
        )
        for service_name, route_name, _service, route in config.routes()
        if (node is None or route.next_hop.node == node) and route.reachability_detection.enabled
    ]


__all__ = ["PassiveSource", "SessionOutcome", "route_choices"]
