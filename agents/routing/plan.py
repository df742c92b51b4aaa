"""The diff between the routes a router wants and the routes the kernel has: a pure function.

Routes are compared in kernel terms (interface index, gateway, weight). Only routes of
the router's own protocol are ever replaced or deleted; a route of another protocol
holding the same (prefix, metric) in the table is a conflict, reported and left alone,
because a kernel `replace` would overwrite it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class KernelHop:
    """One next hop: outgoing interface index (None: let the kernel resolve the gateway),
    gateway (None: device route) and weight 1..256."""

    oif: int | None
    gateway: str | None
    weight: int = 1


@dataclass(frozen=True)
class KernelRoute:
    """A route as the router wants it in its table, with its metric (priority)."""

    prefix: str
    hops: tuple[KernelHop, ...]
    metric: int = 0


@dataclass(frozen=True)
class InstalledRoute:
    """A route found in the router's table."""

    prefix: str
    hops: tuple[KernelHop, ...]
    protocol: int
    metric: int


@dataclass(frozen=True)
class Change:
    """`replace` installs `route` (atomically, in place); `delete` removes an own route."""

    action: Literal["replace", "delete"]
    prefix: str
    metric: int
    reason: str
    route: KernelRoute | None = None

    def describe(self) -> str:
        if self.route is None:
            return f"{self.action} {self.prefix} metric {self.metric} ({self.reason})"
        return (
            f"{self.action} {self.prefix} metric {self.metric} via "
            f"{describe_hops(self.route.hops)} ({self.reason})"
        )


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    conflicts: tuple[str, ...]


def describe_hops(hops: Iterable[KernelHop]) -> str:
    parts = []
    for hop in hops:
        where = f"{hop.gateway}" if hop.gateway else "direct"
        if hop.oif is not None:
            where += f" oif {hop.oif}"
        parts.append(f"{where} weight {hop.weight}")
    return ", ".join(parts) or "nothing"


def _same_gateway(wanted: str | None, installed: str | None) -> bool:
    if wanted is None or installed is None:
        return wanted is installed
    return ipaddress.ip_address(wanted) == ipaddress.ip_address(installed)


def _hop_matches(wanted: KernelHop, installed: KernelHop, weighed: bool) -> bool:
    if not _same_gateway(wanted.gateway, installed.gateway):
        return False
    if wanted.oif is not None and wanted.oif != installed.oif:
        return False
    return not weighed or wanted.weight == installed.weight


def same_hops(wanted: tuple[KernelHop, ...], installed: tuple[KernelHop, ...]) -> bool:
    """Equal next-hop sets; weights only count when there is more than one hop."""
    if len(wanted) != len(installed):
        return False
    weighed = len(wanted) > 1
    remaining = list(installed)
    for hop in wanted:
        match = next((i for i in remaining if _hop_matches(hop, i, weighed)), None)
        if match is None:
            return False
        remaining.remove(match)
    return True


def plan_changes(
    wanted: Mapping[str, KernelRoute],
    installed: Iterable[InstalledRoute],
    *,
    protocol: int,
) -> Plan:
    """Changes that make the table hold exactly `wanted` among the routes of `protocol`.

    `installed` is every route of the table (any protocol); routes of other protocols
    are only looked at to detect conflicts.
    """
    own: dict[tuple[str, int], InstalledRoute] = {}
    foreign: dict[tuple[str, int], InstalledRoute] = {}
    for found in installed:
        (own if found.protocol == protocol else foreign)[(found.prefix, found.metric)] = found
    changes: list[Change] = []
    conflicts: list[str] = []
    for prefix, route_metric in sorted(own):
        wanted_route = wanted.get(prefix)
        if wanted_route is None or wanted_route.metric != route_metric:
            changes.append(Change("delete", prefix, route_metric, "no longer wanted"))
    for prefix, route in sorted(wanted.items()):
        metric = route.metric
        other = foreign.get((prefix, metric))
        if other is not None:
            conflicts.append(
                f"{prefix} metric {metric} is held by a route of protocol {other.protocol};"
                " not touching it"
            )
            continue
        current = own.get((prefix, metric))
        if current is None:
            changes.append(Change("replace", prefix, metric, "missing", route))
        elif not same_hops(route.hops, current.hops):
            changes.append(
                Change(
                    "replace",
                    prefix,
                    metric,
                    f"next hops were {describe_hops(current.hops)}",
                    route,
                )
            )
    return Plan(tuple(changes), tuple(conflicts))
