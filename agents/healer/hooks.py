"""Reconnect hooks: what the healer does to move a client onto a route.

A hook is an async callable taking a `Reconnect`. The built-in one,
`RouteRepointHook`, points a host route (/32 or /128) for each of the
connection's destination addresses at the chosen route's next hop
(`next-hop.gateway-ip` via `next-hop.interface`) with an atomic `replace`,
using its own routing protocol number, table and metric (`healer.route-*`),
optionally inside a named network namespace. It never deletes anything:
the previous route is overwritten in one step, so a working data plane is
never torn down. Anything else (re-dialling a tunnel, an NSM request) is a
user hook with the same signature.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2 import config as pyroute2_config
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger("pathwatch.healer")


@dataclass(frozen=True)
class Reconnect:
    """Move (or, with `same`, re-request) the client's connection onto `route`."""

    service: str
    route: str
    previous: str | None
    same: bool
    interface: str | None
    gateway: str | None
    destinations: list[str] = field(default_factory=list)
    reason: str = ""


ReconnectHook = Callable[[Reconnect], Awaitable[None]]


class HookError(RuntimeError):
    """A reconnect hook could not do its job (the heal counts as failed)."""


def host_prefix(address: str) -> str:
    ip = ipaddress.ip_address(address)
    return f"{ip}/{ip.max_prefixlen}"


class RouteRepointHook:
    """The built-in hook: host routes to the destinations via the chosen next hop."""

    def __init__(
        self, *, table: int = 254, protocol: int = 200, metric: int = 0, netns: str | None = None
    ) -> None:
        self.table = table
        self.protocol = protocol
        self.metric = metric
        self.netns = netns
        self.applied = 0

    async def _open(self) -> AsyncIPRoute:
        # see agents/routing/kernel.py: the namespace helper must not run our signal handlers
        pyroute2_config.disable_mp_signal = True
        ipr = AsyncIPRoute(netns=self.netns, flags=0) if self.netns else AsyncIPRoute()
        await ipr.setup_endpoint()
        return ipr

    async def __call__(self, reconnect: Reconnect) -> None:
        if reconnect.gateway is None and reconnect.interface is None:
            raise HookError(f"route {reconnect.route}: next hop has neither gateway nor interface")
        ipr = await self._open()
        try:
            oif: int | None = None
            if reconnect.interface:
                found = [
                    link["index"]
                    async for link in await ipr.link("dump")
                    if link.get("ifname") == reconnect.interface
                ]
                if not found:
                    raise HookError(f"interface {reconnect.interface!r} does not exist")
                oif = found[0]
            for destination in reconnect.destinations:
                request: dict[str, Any] = {
                    "dst": host_prefix(destination),
                    "table": self.table,
                    "proto": self.protocol,
                    "priority": self.metric,
                    "family": socket.AF_INET6 if ":" in destination else socket.AF_INET,
                }
                if oif is not None:
                    request["oif"] = oif
                if reconnect.gateway is not None:
                    request["gateway"] = reconnect.gateway
                else:
                    request["scope"] = 253  # link
                try:
                    await ipr.route("replace", **request)
                except NetlinkError as exc:
                    if exc.code == errno.EPERM:
                        raise HookError("changing routes needs CAP_NET_ADMIN") from None
                    raise HookError(f"replace {request['dst']}: {exc}") from None
                self.applied += 1
                log.info(
                    "healer: %s via %s dev %s (route %s)",
                    request["dst"],
                    reconnect.gateway,
                    reconnect.interface,
                    reconnect.route,
                )
        finally:
            ipr.close()
