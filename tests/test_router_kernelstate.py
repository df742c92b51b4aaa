"""The router's notification-fed view of its kernel table (agents.routing.kernelstate),
against a real kernel inside a test namespace joined by one veth link to another.

Every address here exists only inside these namespaces.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import pytest

from agents.routing.kernel import KernelTable
from agents.routing.kernelstate import KernelState
from agents.routing.plan import InstalledRoute
from tests.conftest import wait_for
from tests.netns import in_ns, namespaces, requires_root, veth

pytestmark = [pytest.mark.netns, requires_root]

GATEWAY = "10.1.0.2"
PREFIX = "192.0.2.0/24"
OTHER = "198.51.100.0/24"
PROTOCOL = 199
DEADLINE = 5.0


@pytest.fixture
def host() -> Iterator[tuple[str, str]]:
    with namespaces("h", "r") as (host_ns, router_ns):
        interface, _ = veth(host_ns, "10.1.0.1/24", router_ns, f"{GATEWAY}/24")
        yield host_ns, interface


@pytest.fixture
async def table(host: tuple[str, str]) -> AsyncIterator[KernelTable]:
    opened = await KernelTable.open(table=254, protocol=PROTOCOL, metric=0, netns=host[0])
    try:
        yield opened
    finally:
        opened.close()


def prefixes(routes: list[InstalledRoute]) -> set[str]:
    return {route.prefix for route in routes}


async def test_routes_follow_notifications_without_dumping(
    host: tuple[str, str], table: KernelTable
) -> None:
    namespace, _ = host
    dumps = table.state.reloads
    in_ns(namespace, "ip", "route", "add", PREFIX, "via", GATEWAY, "proto", str(PROTOCOL))
    in_ns(namespace, "ip", "route", "add", OTHER, "via", GATEWAY, "proto", "static")

    async def both_seen() -> bool:
        return {PREFIX, OTHER} <= prefixes(await table.installed())

    await wait_for(both_seen, DEADLINE, what="routes added by someone else")
    assert prefixes(await table.installed(own_only=True)) == {PREFIX}
    [own] = await table.installed(own_only=True)
    assert [hop.gateway for hop in own.hops] == [GATEWAY]

    in_ns(namespace, "ip", "route", "del", PREFIX, "proto", str(PROTOCOL))

    async def deleted() -> bool:
        return PREFIX not in prefixes(await table.installed())

    await wait_for(deleted, DEADLINE, what="route deleted by someone else")
    assert table.state.reloads == dumps, "the kernel was dumped again"


async def test_a_link_going_down_makes_the_routes_be_dumped_again(
    host: tuple[str, str], table: KernelTable
) -> None:
    namespace, interface = host
    in_ns(namespace, "ip", "route", "add", PREFIX, "via", GATEWAY, "proto", str(PROTOCOL))

    async def added() -> bool:
        return PREFIX in prefixes(await table.installed(own_only=True))

    await wait_for(added, DEADLINE, what="route added")
    dumps = table.state.reloads
    # the kernel drops IPv4 routes through an interface that goes down without a notification
    in_ns(namespace, "ip", "link", "set", interface, "down")

    async def link_down() -> bool:
        return (await table.interfaces()).get(interface, (0, True))[1] is False

    await wait_for(link_down, DEADLINE, what="the link seen down")
    assert PREFIX not in prefixes(await table.installed(own_only=True))
    assert table.state.reloads == dumps + 1


def route_message(event: str, prefix: str, **fields: object) -> dict[str, object]:
    dst, length = prefix.split("/")
    message: dict[str, object] = {
        "event": event,
        "family": 2,
        "dst": dst,
        "dst_len": int(length),
        "table": 254,
        "proto": PROTOCOL,
        "priority": 0,
        "tos": 0,
        "flags": 0,
        "gateway": GATEWAY,
        "oif": 3,
    }
    message.update(fields)
    return message


def test_notifications_fold_into_the_view() -> None:
    state = KernelState(cast(Any, None), table=254)
    state.stale = False
    state.handle(route_message("RTM_NEWROUTE", PREFIX))
    state.handle(route_message("RTM_NEWROUTE", OTHER, table=100))  # another table
    state.handle(route_message("RTM_NEWROUTE", "192.0.2.7/32", flags=0x200))  # a PMTU clone
    assert [route.prefix for route in state.routes.values()] == [PREFIX]
    state.handle(route_message("RTM_DELROUTE", PREFIX))
    assert state.routes == {} and not state.stale

    state.handle({"event": "RTM_NEWLINK", "ifname": "eth0", "index": 3, "flags": 1})
    state.handle({"event": "RTM_NEWLINK", "ifname": "eth0", "index": 3, "flags": 1})  # carrier
    assert state.links == {"eth0": (3, True)} and not state.stale
    state.handle(
        {"event": "RTM_NEWLINK", "ifname": "wan0", "index": 3, "flags": 0}
    )  # renamed, down
    assert state.links == {"wan0": (3, False)} and state.stale
    state.stale = False
    state.handle({"event": "RTM_DELADDR"})
    assert state.stale
