"""The pyroute2 side of the router: read one routing table, resolve interface names, and
apply planned changes with atomic `replace` / protocol-scoped `del`.

Every write carries the router's table and protocol number, so nothing else in the
table is ever changed; reads never change anything. Interfaces and installed routes are
read from a `KernelState` that netlink notifications keep current, so a reconcile's only
netlink round trip is its write. Optionally works inside a named network namespace (the
netlink sockets are opened there; the namespace is never created).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Mapping
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2 import config as pyroute2_config
from pyroute2.netlink.exceptions import NetlinkError

from agents.routing.capability import NetAdminMissing
from agents.routing.desired import DesiredRoute
from agents.routing.kernelstate import KernelState
from agents.routing.plan import Change, InstalledRoute, KernelHop, KernelRoute

#: Scope of a route whose next hops are all directly on a link (`ip route ... dev X`).
SCOPE_LINK = 253
SCOPE_UNIVERSE = 0
IFF_UP = 0x1
#: The kernel stores IPv6 routes given metric 0 with this metric instead.
IPV6_DEFAULT_METRIC = 1024


class RouteApplyError(RuntimeError):
    """The kernel refused a change; `code` is the errno."""

    def __init__(self, change: Change, code: int, message: str) -> None:
        super().__init__(f"{change.describe()}: {message} (errno {code})")
        self.code = code


def family_of(prefix: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_network(prefix).version == 6 else socket.AF_INET


def kernel_metric(prefix: str, metric: int) -> int:
    """The metric the kernel will show for a route added with `metric`."""
    if metric == 0 and family_of(prefix) == socket.AF_INET6:
        return IPV6_DEFAULT_METRIC
    return metric


def _hop_request(hop: KernelHop) -> dict[str, Any]:
    request: dict[str, Any] = {"hops": hop.weight - 1}
    if hop.oif is not None:
        request["oif"] = hop.oif
    if hop.gateway is not None:
        request["gateway"] = hop.gateway
    return request


def _ipv6_multipath_hops(
    prefix: str, hops: list[KernelHop], problems: list[str]
) -> list[KernelHop]:
    """IPv6 multipath takes gateway next hops only: drop device-only ones (or keep the
    heaviest device-only hop alone when there is no gateway hop at all)."""
    with_gateway = [hop for hop in hops if hop.gateway is not None]
    if len(with_gateway) == len(hops):
        return hops
    problems.append(
        f"{prefix}: IPv6 multipath needs a gateway-ip on every next hop;"
        " device-only next hops are left out"
    )
    return with_gateway or [max(hops, key=lambda hop: hop.weight)]


class KernelTable:
    """One routing table as seen and changed by one router (table + protocol)."""

    def __init__(
        self, ipr: AsyncIPRoute, state: KernelState, *, table: int, protocol: int, metric: int
    ) -> None:
        self._ipr = ipr
        self.state = state
        self.table = table
        self.protocol = protocol
        self.metric = metric

    @classmethod
    async def open(
        cls, *, table: int, protocol: int, metric: int, netns: str | None = None
    ) -> KernelTable:
        """Open a netlink socket (inside `netns` when given; a missing namespace is an error)."""
        # pyroute2 opens a namespace socket in a forked child that it may end with
        # SIGTERM; without this the child runs the parent's asyncio signal handler,
        # whose wakeup fd is shared, and the parent believes it got SIGTERM itself.
        pyroute2_config.disable_mp_signal = True
        if netns is None:
            ipr = AsyncIPRoute(strict_check=True)
        else:
            ipr = AsyncIPRoute(netns=netns, flags=0, strict_check=True)
        await ipr.setup_endpoint()
        state = KernelState(ipr, table, netns)
        try:
            await state.start()
        except BaseException:
            state.close()
            ipr.close()
            raise
        return cls(ipr, state, table=table, protocol=protocol, metric=metric)

    def close(self) -> None:
        self.state.close()
        self._ipr.close()

    async def interfaces(self) -> dict[str, tuple[int, bool]]:
        """Every interface of the namespace: name -> (index, administratively up)."""
        return dict(self.state.links)

    async def resolve(
        self, desired: Mapping[str, DesiredRoute]
    ) -> tuple[dict[str, KernelRoute], list[str]]:
        """Kernel form of the desired routes; next hops on missing interfaces are dropped."""
        interfaces = await self.interfaces()
        routes: dict[str, KernelRoute] = {}
        problems: list[str] = []
        for prefix, route in desired.items():
            hops: list[KernelHop] = []
            for hop in route.hops:
                oif: int | None = None
                if hop.interface is not None:
                    found = interfaces.get(hop.interface)
                    if found is None or not found[1]:
                        state = "does not exist" if found is None else "is down"
                        problems.append(
                            f"{hop.route_key}: interface {hop.interface} {state};"
                            f" {prefix} does not use it for now"
                        )
                        continue
                    oif = found[0]
                hops.append(KernelHop(oif=oif, gateway=hop.gateway, weight=hop.weight))
            if len(hops) > 1 and family_of(prefix) == socket.AF_INET6:
                hops = _ipv6_multipath_hops(prefix, hops, problems)
            if hops:
                metric = kernel_metric(prefix, self.metric)
                routes[prefix] = KernelRoute(prefix, tuple(hops), metric)
        return routes, problems

    async def installed(self, own_only: bool = False) -> list[InstalledRoute]:
        """Routes of the table (both families): only the router's own protocol, or all.

        Read from the notification-fed `KernelState` (dumped again when it may be stale).
        """
        return await self.state.installed(self.protocol if own_only else None)

    async def refresh(self) -> None:
        """Dump interfaces and routes again (the periodic check against the kernel)."""
        await self.state.reload()

    async def apply(self, change: Change) -> None:
        """Make one change; raises NetAdminMissing on EPERM, RouteApplyError otherwise."""
        base: dict[str, Any] = {
            "dst": change.prefix,
            "family": family_of(change.prefix),
            "table": self.table,
            "proto": self.protocol,
            "priority": change.metric,
        }
        try:
            if change.action == "delete":
                await self._delete(base)
            else:
                assert change.route is not None
                await self._replace(base, change.route)
        except NetlinkError as exc:
            if exc.code == errno.EPERM:
                raise NetAdminMissing(f"the kernel refused: {change.describe()}") from None
            raise RouteApplyError(change, exc.code, str(exc)) from None

    async def _delete(self, base: dict[str, Any]) -> None:
        try:
            await self._ipr.route("del", **base)
        except NetlinkError as exc:
            if exc.code != errno.ESRCH:  # already gone
                raise

    async def _replace(self, base: dict[str, Any], route: KernelRoute) -> None:
        hops = route.hops
        device_only = all(h.gateway is None for h in hops)
        scope = SCOPE_LINK if device_only and base["family"] == socket.AF_INET else SCOPE_UNIVERSE
        if len(hops) == 1:
            single = _hop_request(hops[0])
            single.pop("hops")
            await self._ipr.route("replace", scope=scope, **base, **single)
        else:
            multipath = [_hop_request(hop) for hop in hops]
            await self._ipr.route("replace", scope=scope, multipath=multipath, **base)
