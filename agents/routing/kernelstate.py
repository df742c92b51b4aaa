"""The router's view of its kernel table, kept current from netlink notifications.

`KernelState` dumps the namespace's interfaces and one table's routes once, then follows
the kernel's link, address and route notifications, so a reconcile reads interfaces and
installed routes from memory instead of asking the kernel each time (three to five
netlink dumps, parsed in Python, before the first write). The kernel removes IPv4 routes
silently when an interface goes administratively down or away, or loses the address
the route uses: those events (and a notification socket that overflowed or failed) mark
the routes `stale`, and the next read dumps them again. `reload()` dumps everything
again (the router's periodic resync calls it, so a missed notification cannot last).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.rtnl import (
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
)

from agents.routing.plan import InstalledRoute, KernelHop

log = logging.getLogger("pathwatch.router")

IFF_UP = 0x1
RTM_F_CLONED = 0x200
GROUPS = RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_IPV4_IFADDR
GROUPS |= RTMGRP_IPV6_IFADDR
#: Seconds between reading the notifications again after the socket failed.
FAILURE_PAUSE_S = 0.1
#: (family, prefix, tos, metric): what tells two routes of one table apart.
RouteKey = tuple[int, str, int, int]


def route_prefix(message: Any) -> str:
    """The destination prefix of a route message (the default route has no `dst`)."""
    family = message["family"]
    destination = message.get("dst")
    if destination is None:
        destination = "::" if family == socket.AF_INET6 else "0.0.0.0"
    return str(ipaddress.ip_network(f"{destination}/{message['dst_len']}", strict=False))


def route_hops(message: Any) -> tuple[KernelHop, ...]:
    multipath = message.get("multipath")
    if multipath:
        return tuple(
            KernelHop(oif=hop.get("oif"), gateway=hop.get("gateway"), weight=hop.get("hops", 0) + 1)
            for hop in multipath
        )
    return (KernelHop(oif=message.get("oif"), gateway=message.get("gateway"), weight=1),)


def installed_route(message: Any) -> InstalledRoute:
    return InstalledRoute(
        prefix=route_prefix(message),
        hops=route_hops(message),
        protocol=message["proto"],
        metric=message.get("priority") or 0,
    )


def route_key(message: Any) -> RouteKey:
    return (
        int(message["family"]),
        route_prefix(message),
        int(message.get("tos") or 0),
        int(message.get("priority") or 0),
    )


class KernelState:
    """Interfaces and one table's routes, from one dump and then notifications."""

    def __init__(self, query: AsyncIPRoute, table: int, netns: str | None = None) -> None:
        self._query = query
        self.table = table
        self.netns = netns
        #: interface name -> (index, administratively up)
        self.links: dict[str, tuple[int, bool]] = {}
        self.routes: dict[RouteKey, InstalledRoute] = {}
        #: the routes must be dumped again before they are believed
        self.stale = True
        self.reloads = 0
        self._events: AsyncIPRoute | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe first, then dump: a change during the dump is not lost."""
        self._events = AsyncIPRoute(netns=self.netns) if self.netns else AsyncIPRoute()
        await self._events.bind(groups=GROUPS)
        await self.reload()
        self._task = asyncio.create_task(self._follow(), name="router-kernel-state")

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._events is not None:
            self._events.close()

    async def reload(self) -> None:
        """Dump the interfaces and the table's routes again."""
        links: dict[str, tuple[int, bool]] = {}
        async for link in await self._query.link("dump"):
            name = link.get("ifname")
            if name is not None:
                links[name] = (link["index"], bool(link["flags"] & IFF_UP))
        self.links = links
        await self._reload_routes()

    async def _reload_routes(self) -> None:
        routes: dict[RouteKey, InstalledRoute] = {}
        self.stale = False  # a notification during the dump may set it again
        for family in (socket.AF_INET, socket.AF_INET6):
            async for message in await self._query.route("dump", family=family, table=self.table):
                if message.get("table") == self.table:
                    routes[route_key(message)] = installed_route(message)
        self.routes = routes
        self.reloads += 1

    async def installed(self, own_protocol: int | None = None) -> list[InstalledRoute]:
        """The table's routes (only `own_protocol`'s when given); dumped again if stale."""
        if self.stale:
            await self._reload_routes()
        return [
            route
            for route in self.routes.values()
            if own_protocol is None or route.protocol == own_protocol
        ]

    # --- notifications ------------------------------------------------------------

    async def _follow(self) -> None:
        events = self._events
        assert events is not None
        while True:
            try:
                async for message in events.get():
                    self.handle(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # ENOBUFS (overflow) and the like: trust nothing
                log.warning("router: netlink notifications failed (%s); dumping again", exc)
                self.stale = True
                await asyncio.sleep(FAILURE_PAUSE_S)  # a socket that keeps failing: no spin
                with contextlib.suppress(Exception):
                    await self.reload()

    def handle(self, message: Any) -> None:
        """Fold one notification in."""
        event = message.get("event")
        if event in ("RTM_NEWROUTE", "RTM_DELROUTE"):
            if message.get("table") != self.table or int(message.get("flags") or 0) & RTM_F_CLONED:
                return  # another table, or a cached clone (PMTU) that a dump leaves out
            key = route_key(message)
            if event == "RTM_NEWROUTE":
                self.routes[key] = installed_route(message)
            else:
                self.routes.pop(key, None)
        elif event in ("RTM_NEWLINK", "RTM_DELLINK"):
            self._link(message, deleted=event == "RTM_DELLINK")
        elif event == "RTM_DELADDR":
            self.stale = True  # routes using the address went with it, unannounced

    def _link(self, message: Any, *, deleted: bool) -> None:
        name = message.get("ifname")
        if name is None:
            return
        before = self.links.get(name)
        if deleted:
            self.links.pop(name, None)
            self.stale = True
            return
        now = (int(message["index"]), bool(int(message.get("flags") or 0) & IFF_UP))
        for other, (index, up) in list(self.links.items()):
            if index == now[0] and other != name:
                del self.links[other]  # renamed
                before = (index, up)
        self.links[name] = now
        if before is not None and before != now:
            # down (or renumbered): the kernel dropped routes through it without a word
            self.stale = True
