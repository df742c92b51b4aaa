"""Link and neighbour watcher: immediate evidence that a route's next hop is gone.

pyroute2 listens to rtnetlink link and neighbour notifications. For every
watched route it tracks the next-hop interface's operational state (up when
the interface is administratively up and its operstate is UP or UNKNOWN) and
the gateway's neighbour entry (FAILED or INCOMPLETE means unresolved). Each
change is handed at once to `publish` as `FastEvidence` (`link-down` /
`link-up`, `neighbour-unresolved` / `neighbour-resolved`); at start only the
bad states are reported. `netns` watches a named network namespace instead
of the agent's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.rtnl import RTMGRP_LINK, RTMGRP_NEIGH

from schemas.wire import FastEvidence, FastKind

log = logging.getLogger("pathwatch.agent.link")

IFF_UP = 0x1
NUD_INCOMPLETE = 0x01
NUD_FAILED = 0x20
_UP_OPERSTATES = {"UP", "UNKNOWN"}


@dataclass(frozen=True)
class LinkWatch:
    """One route's next hop to watch: its interface and / or gateway."""

    service: str
    route: str
    interface: str | None = None
    gateway: str | None = None


Publish = Callable[[FastEvidence], Awaitable[None]]


def link_is_up(message: Any) -> bool:
    """Up when administratively up and the operstate is UP or UNKNOWN (loopback)."""
    flags = int(message.get("flags") or 0)
    return bool(flags & IFF_UP) and message.get("operstate") in _UP_OPERSTATES


def neighbour_is_unresolved(message: Any) -> bool:
    return bool(int(message.get("state") or 0) & (NUD_FAILED | NUD_INCOMPLETE))


class LinkWatcher:
    """Publishes link and neighbour transitions of the watched next hops."""

    def __init__(
        self,
        watches: list[LinkWatch],
        publish: Publish,
        *,
        node: str = "",
        agent: str = "",
        netns: str | None = None,
    ) -> None:
        self.watches = watches
        self.publish = publish
        self.node = node
        self.agent = agent
        self.netns = netns
        self.link_up: dict[str, bool] = {}
        self.neighbour_unresolved: dict[str, bool] = {}
        self.events_published = 0
        self.ready = asyncio.Event()

    async def _emit(
        self, kind: FastKind, interface: str | None, gateway: str | None, detail: str
    ) -> None:
        now = time.time()
        for watch in self.watches:
            if kind.startswith("link") and watch.interface != interface:
                continue
            if kind.startswith("neighbour") and watch.gateway != gateway:
                continue
            evidence = FastEvidence(
                service=watch.service,
                route=watch.route,
                ts=now,
                kind=kind,
                node=self.node,
                agent=self.agent,
                interface=watch.interface or "",
                gateway=watch.gateway or "",
                protocol="link",
                detail=detail,
            )
            self.events_published += 1
            await self.publish(evidence)

    async def _link_changed(self, name: str, up: bool, detail: str) -> None:
        previous = self.link_up.get(name)
        self.link_up[name] = up
        if previous is None and up:
            return
        if previous != up:
            await self._emit("link-up" if up else "link-down", name, None, detail)

    async def _neighbour_changed(self, gateway: str, unresolved: bool, detail: str) -> None:
        previous = self.neighbour_unresolved.get(gateway)
        self.neighbour_unresolved[gateway] = unresolved
        if previous is None and not unresolved:
            return
        if previous != unresolved:
            kind: FastKind = "neighbour-unresolved" if unresolved else "neighbour-resolved"
            await self._emit(kind, None, gateway, detail)

    async def _initial_state(self, query: AsyncIPRoute) -> None:
        interfaces = {w.interface for w in self.watches if w.interface}
        gateways = {w.gateway for w in self.watches if w.gateway}
        seen: set[str] = set()
        async for link in await query.link("dump"):
            name = link.get("ifname")
            if name in interfaces:
                seen.add(name)
                await self._link_changed(
                    name, link_is_up(link), f"operstate {link.get('operstate')}"
                )
        for name in interfaces - seen:
            await self._link_changed(name, False, "interface does not exist")
        if gateways:
            async for neighbour in await query.neigh("dump"):
                dst = neighbour.get("dst")
                if dst in gateways:
                    await self._neighbour_changed(
                        dst,
                        neighbour_is_unresolved(neighbour),
                        f"nud state {neighbour.get('state')}",
                    )

    async def _handle(self, message: Any) -> None:
        event = message.get("event")
        if event in ("RTM_NEWLINK", "RTM_DELLINK"):
            name = message.get("ifname")
            if name in {w.interface for w in self.watches}:
                up = event == "RTM_NEWLINK" and link_is_up(message)
                await self._link_changed(name, up, f"{event} operstate {message.get('operstate')}")
        elif event == "RTM_NEWNEIGH":
            dst = message.get("dst")
            if dst in {w.gateway for w in self.watches}:
                await self._neighbour_changed(
                    dst, neighbour_is_unresolved(message), f"nud state {message.get('state')}"
                )

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until `stop` is set."""
        if not self.watches:
            self.ready.set()
            await stop.wait()
            return
        events = AsyncIPRoute(netns=self.netns) if self.netns else AsyncIPRoute()
        query = AsyncIPRoute(netns=self.netns) if self.netns else AsyncIPRoute()
        try:
            await events.bind(groups=RTMGRP_LINK | RTMGRP_NEIGH)
            await self._initial_state(query)
            self.ready.set()
            stopper = asyncio.create_task(stop.wait())
            try:
                while not stop.is_set():
                    reader = asyncio.ensure_future(self._next_batch(events))
                    done, _ = await asyncio.wait(
                        {reader, stopper}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if reader not in done:
                        reader.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await reader
                        break
                    for message in reader.result():
                        await self._handle(message)
            finally:
                stopper.cancel()
        finally:
            events.close()
            query.close()

    @staticmethod
    async def _next_batch(events: AsyncIPRoute) -> list[Any]:
        return [message async for message in events.get()]
