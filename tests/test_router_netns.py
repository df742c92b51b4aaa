"""The route actuator against a real kernel (inside test namespaces) and a real nats-server.

Bed: a host namespace joined by two veth links to two router namespaces (path 1 via
10.1.0.2, cost 10; path 2 via 10.2.0.2, cost 20). The service prefix 192.0.2.0/24 and
every other address exist only inside these namespaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import msgspec
import pytest

from agents.router import Router, RouterError
from pathwatch.runtime.bus import Bus, BusOptions
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.embedded import EmbeddedNats, free_port
from schemas import subjects
from schemas.codec import encode
from schemas.config import PathwatchConfig
from schemas.wire import PathState, RouteCommand
from tests.conftest import wait_for
from tests.netns import in_ns, namespaces, requires_root, veth

pytestmark = [pytest.mark.netns, requires_root]

PREFIX = "192.0.2.0/24"
GW1, GW2 = "10.1.0.2", "10.2.0.2"
DEADLINE = 5.0


@dataclass
class Bed:
    host: str
    if1: str
    if2: str


@pytest.fixture
def bed() -> Iterator[Bed]:
    with namespaces("h", "r1", "r2") as (host, r1, r2):
        if1, _ = veth(host, "10.1.0.1/24", r1, f"{GW1}/24")
        if2, _ = veth(host, "10.2.0.1/24", r2, f"{GW2}/24")
        yield Bed(host, if1, if2)


def make_config(
    bed: Bed, service: str, node: str, mode: str = "ecmp", resync_interval: float = 30
) -> PathwatchConfig:
    text = f"""
nats: {{url: "nats://127.0.0.1:4222"}}
router: {{mode: {mode}, resync-interval: {resync_interval}}}
services:
  {service}:
    address: [{PREFIX}]
    service-policy: {{best-effort: true}}
    service-routes:
      p1: {{next-hop: {{node: {node}, interface: {bed.if1}, gateway-ip: {GW1}}}, cost: 10}}
      p2: {{next-hop: {{node: {node}, interface: {bed.if2}, gateway-ip: {GW2}}}, cost: 20}}
"""
    return parse_config(text).config


def routes(ns: str, *selector: str) -> list[dict[str, object]]:
    """`ip -j route show` inside the namespace."""
    found: list[dict[str, object]] = json.loads(
        in_ns(ns, "ip", "-j", "route", "show", *selector).stdout or "[]"
    )
    return found


def hops(ns: str, prefix: str = PREFIX) -> dict[str, int] | None:
    """Gateway -> weight of the protocol-199 route to `prefix` (weight 1 when single)."""
    for route in routes(ns, "table", "main", "proto", "199"):
        if route["dst"] == prefix:
            nexthops = route.get("nexthops")
            if isinstance(nexthops, list):
                return {str(hop["gateway"]): int(hop["weight"]) for hop in nexthops}
            return {str(route["gateway"]): 1}
    return None


def unique_names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"svc{tag}", f"node{tag}"


def state(service: str, route: str, *, in_service: bool, best_effort: bool = False) -> PathState:
    return PathState(
        service=service,
        route=route,
        state="up" if in_service else "down",
        in_service=in_service,
        best_effort=best_effort,
        updated=time.time(),
    )


async def put(bus: Bus, path_state: PathState) -> None:
    kv = await bus.kv(subjects.KV_PATHS)
    await kv.put(subjects.path_key(path_state.service, path_state.route), encode(path_state))


@dataclass
class Running:
    router: Router
    task: asyncio.Task[None]

    async def until(self, condition: Callable[[], bool], what: str) -> float:
        def check() -> bool:
            if self.task.done():
                self.task.result()  # re-raise the router's failure
                raise AssertionError("router stopped")
            return condition()

        return await wait_for(check, DEADLINE, what=what)


@contextlib.asynccontextmanager
async def running(router: Router) -> AsyncIterator[Running]:
    stop = asyncio.Event()
    task = asyncio.create_task(router.run(stop))
    try:
        yield Running(router, task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_ecmp_follows_path_state(bed: Bed, bus: Bus) -> None:
    service, node = unique_names()
    router = Router(make_config(bed, service, node), bus, node=node, netns=bed.host)
    async with running(router) as run:
        # no PathState yet: unknown counts as in service, weighted by cost
        await run.until(lambda: hops(bed.host) == {GW1: 256, GW2: 128}, "ECMP over both")

        await put(bus, state(service, "p1", in_service=False))
        await run.until(lambda: hops(bed.host) == {GW2: 1}, "path 1 withdrawn")

        await put(bus, state(service, "p1", in_service=True))
        await run.until(lambda: hops(bed.host) == {GW1: 256, GW2: 128}, "path 1 restored")

        await put(bus, state(service, "p1", in_service=False))
        await put(bus, state(service, "p2", in_service=False, best_effort=True))
        await run.until(lambda: hops(bed.host) == {GW2: 1}, "best-effort path 2 kept")
    assert router.stats.apply_errors == 0


async def test_best_mode_uses_the_cheapest_in_service(bed: Bed, bus: Bus) -> None:
    service, node = unique_names()
    config = make_config(bed, service, node, mode="best")
    async with running(Router(config, bus, node=node, netns=bed.host)) as run:
        await run.until(lambda: hops(bed.host) == {GW1: 1}, "path 1 only")
        await put(bus, state(service, "p1", in_service=False))
        await run.until(lambda: hops(bed.host) == {GW2: 1}, "path 2 once path 1 is down")


async def test_start_removes_stale_own_routes_and_nothing_else(bed: Bed, bus: Bus) -> None:
    service, node = unique_names()
    in_ns(bed.host, "ip", "route", "add", "198.51.100.0/24", "via", GW1, "proto", "199")
    in_ns(bed.host, "ip", "route", "add", "203.0.113.0/24", "via", GW2, "proto", "static")
    in_ns(
        bed.host, "ip", "route", "add", "203.0.113.0/24", "via", GW2, "table", "100", "proto", "199"
    )
    before_other = routes(bed.host, "table", "main", "proto", "static")
    async with running(
        Router(make_config(bed, service, node), bus, node=node, netns=bed.host)
    ) as run:
        await run.until(lambda: hops(bed.host, "198.51.100.0/24") is None, "stale route removed")
        await run.until(lambda: hops(bed.host) == {GW1: 256, GW2: 128}, "service route added")
        await put(bus, state(service, "p1", in_service=False))
        await run.until(lambda: hops(bed.host) == {GW2: 1}, "path 1 withdrawn")
    assert routes(bed.host, "table", "main", "proto", "static") == before_other
    assert [r["dst"] for r in routes(bed.host, "table", "100")] == ["203.0.113.0/24"]


async def test_conflicting_route_of_another_protocol_is_left_alone(bed: Bed, bus: Bus) -> None:
    service, node = unique_names()
    in_ns(bed.host, "ip", "route", "add", PREFIX, "via", GW2, "proto", "static")
    router = Router(make_config(bed, service, node), bus, node=node, netns=bed.host)
    async with running(router) as run:
        await run.until(lambda: router.stats.reconciles >= 1, "a reconcile")
    static = routes(bed.host, "table", "main", "proto", "static")
    assert [(r["dst"], r["gateway"]) for r in static] == [(PREFIX, GW2)]
    assert hops(bed.host) is None


async def test_dry_run_changes_nothing(
    bed: Bed, bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    service, node = unique_names()
    in_ns(bed.host, "ip", "route", "add", "198.51.100.0/24", "via", GW1, "proto", "199")
    before = routes(bed.host, "table", "all")
    router = Router(make_config(bed, service, node), bus, node=node, netns=bed.host, dry_run=True)
    caplog.set_level(logging.INFO, logger="pathwatch.router")
    async with running(router) as run:
        await run.until(lambda: router.stats.changes_skipped_dry_run >= 2, "a dry-run plan")
        await put(bus, state(service, "p1", in_service=False))
        await run.until(lambda: router.stats.reconciles >= 2, "a second reconcile")
    assert routes(bed.host, "table", "all") == before
    assert router.stats.changes_applied == 0
    messages = [record.getMessage() for record in caplog.records]
    assert any("would replace 192.0.2.0/24" in m for m in messages)
    assert any("would delete 198.51.100.0/24" in m for m in messages)


async def test_route_command_acts_before_kv_and_kv_stays_the_truth(bed: Bed, bus: Bus) -> None:
    service, node = unique_names()
    router = Router(make_config(bed, service, node), bus, node=node, netns=bed.host)
    async with running(router) as run:
        await run.until(lambda: hops(bed.host) == {GW1: 256, GW2: 128}, "ECMP over both")
        command = RouteCommand(
            id=uuid.uuid4().hex,
            action="withdraw",
            node=node,
            service=service,
            route="p1",
            gateway=GW1,
            reason="test",
            ts=time.time(),
        )
        await bus.js.publish(subjects.cmd_route(node), encode(command))
        await run.until(lambda: hops(bed.host) == {GW2: 1}, "withdrawn by command")
        await bus.js.publish(subjects.cmd_route(node), b"{not json")
        await run.until(lambda: router.stats.malformed["route-command:json"] == 1, "bad command")

        await put(bus, state(service, "p1", in_service=True))
        await run.until(lambda: hops(bed.host) == {GW1: 256, GW2: 128}, "KV restores path 1")
    assert router.stats.commands == 1


async def test_restarted_router_converges_from_kv(bed: Bed, bus: Bus) -> None:
    service, node = unique_names()
    config = make_config(bed, service, node)
    async with running(Router(config, bus, node=node, netns=bed.host)) as run:
        await run.until(lambda: hops(bed.host) == {GW1: 256, GW2: 128}, "ECMP over both")
    await put(bus, state(service, "p2", in_service=False))  # while no router runs
    assert hops(bed.host) == {GW1: 256, GW2: 128}
    async with running(Router(config, bus, node=node, netns=bed.host)) as run:
        await run.until(lambda: hops(bed.host) == {GW1: 1}, "path 2 gone after restart")


async def test_periodic_resync_repairs_drift_and_follows_links(bed: Bed, bus: Bus) -> None:
    service, node = unique_names()
    config = make_config(bed, service, node, resync_interval=1)
    async with running(Router(config, bus, node=node, netns=bed.host)) as run:
        await run.until(lambda: hops(bed.host) == {GW1: 256, GW2: 128}, "ECMP over both")
        in_ns(bed.host, "ip", "route", "del", PREFIX, "proto", "199")
        await run.until(lambda: hops(bed.host) == {GW1: 256, GW2: 128}, "route put back")
        in_ns(bed.host, "ip", "link", "set", bed.if1, "down")
        await run.until(lambda: hops(bed.host) == {GW2: 1}, "hop on a down link left out")
        in_ns(bed.host, "ip", "link", "set", bed.if1, "up")
        await run.until(lambda: hops(bed.host) == {GW1: 256, GW2: 128}, "hop back with its link")


async def test_refuses_a_missing_namespace_and_a_reserved_protocol(bed: Bed, bus: Bus) -> None:
    service, node = unique_names()
    config = make_config(bed, service, node)
    missing = Router(config, bus, node=node, netns=f"pwmissing{uuid.uuid4().hex[:6]}")
    with pytest.raises(RouterError, match="network namespace"):
        await missing.run(asyncio.Event())
    reserved = msgspec.structs.replace(
        config, router=msgspec.structs.replace(config.router, protocol=4)
    )
    with pytest.raises(RouterError, match="reserved"):
        await Router(reserved, bus, node=node, netns=bed.host).run(asyncio.Event())
    assert routes(bed.host, "proto", "4") == []


class TcpProxy:
    """A loopback TCP relay that can be cut (every connection closed, port refused) and
    reopened on the same port: a NATS outage for whoever connects through it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers.update((client_w, server_w))

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.close()

        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))


async def test_converges_from_kv_after_a_nats_reconnect(
    bed: Bed, bus: Bus, nats_server: EmbeddedNats
) -> None:
    service, node = unique_names()
    proxy = TcpProxy(nats_server.port)
    await proxy.open()
    router_bus = await Bus.connect(
        BusOptions.from_url(f"nats://127.0.0.1:{proxy.port}", name="router-under-test")
    )
    router = Router(make_config(bed, service, node), router_bus, node=node, netns=bed.host)
    try:
        async with running(router) as run:
            await run.until(lambda: hops(bed.host) == {GW1: 256, GW2: 128}, "ECMP over both")
            resyncs_before = router.stats.kv_resyncs
            await proxy.cut()
            await wait_for(lambda: not router_bus.nc.is_connected, DEADLINE, what="disconnect")
            await put(bus, state(service, "p1", in_service=False))  # missed by the router
            assert hops(bed.host) == {GW1: 256, GW2: 128}  # nothing torn down meanwhile
            await proxy.open()
            await run.until(lambda: hops(bed.host) == {GW2: 1}, "converged after reconnect")
            await run.until(lambda: router.stats.kv_resyncs > resyncs_before, "a KV resync")
    finally:
        await proxy.cut()
        await router_bus.close()
