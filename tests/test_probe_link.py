"""Link and neighbour watcher: link down reaches `pw.fast` within 100 ms, and
recovery is published too; unresolved neighbours are evidence as well."""

from __future__ import annotations

import asyncio
import contextlib
import time

from agents.nsexec import run_in_netns
from agents.probe.icmp_engine import IcmpEngine
from agents.probe.link import LinkWatch, LinkWatcher
from pathwatch.runtime.bus import Bus
from schemas import subjects
from schemas.codec import decode_message, encode
from schemas.wire import FastEvidence
from tests.conftest import wait_for
from tests.netns import in_ns, namespaces, requires_root, veth

LINK_DOWN_DEADLINE_S = 0.100


async def ping_once(address: str, timeout: float) -> str:
    engine = IcmpEngine()
    try:
        return (await engine.ping(address, timeout=timeout)).outcome
    finally:
        engine.close()


@requires_root
async def test_link_down_and_up_published_on_fast_within_deadline(bus: Bus) -> None:
    with namespaces("near", "far") as (near, far):
        near_if, _far_if = veth(near, "10.78.1.1/24", far, "10.78.1.2/24")
        received: list[tuple[float, FastEvidence]] = []

        async def on_fast(msg: object) -> None:
            received.append((time.monotonic(), decode_message(msg.data, FastEvidence)))  # type: ignore[attr-defined]

        await bus.nc.subscribe(subjects.fast("web", "r1"), cb=on_fast)

        async def publish(evidence: FastEvidence) -> None:
            await bus.nc.publish(subjects.fast(evidence.service, evidence.route), encode(evidence))
            await bus.nc.flush()

        watcher = LinkWatcher(
            [LinkWatch("web", "r1", interface=near_if)], publish, node="n1", agent="a1", netns=near
        )
        stop = asyncio.Event()
        task = asyncio.create_task(watcher.run(stop))
        try:
            await asyncio.wait_for(watcher.ready.wait(), 5)
            assert watcher.link_up == {near_if: True}
            assert received == []  # a healthy start publishes nothing

            downed_at = time.monotonic()
            in_ns(near, "ip", "link", "set", near_if, "down")
            await wait_for(lambda: len(received) >= 1, 2, what="link-down on pw.fast")
            arrived_at, evidence = received[0]
            assert evidence.kind == "link-down"
            assert (evidence.service, evidence.route, evidence.interface) == ("web", "r1", near_if)
            assert evidence.node == "n1" and evidence.agent == "a1"
            latency = arrived_at - downed_at
            # `ip` itself takes a few ms of that; the deadline is end to end
            assert latency < LINK_DOWN_DEADLINE_S, f"link-down took {latency * 1000:.1f} ms"

            in_ns(near, "ip", "link", "set", near_if, "up")
            await wait_for(lambda: len(received) >= 2, 2, what="link-up on pw.fast")
            assert received[1][1].kind == "link-up"
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)


@requires_root
async def test_neighbour_incomplete_is_unresolved_and_recovery_is_resolved() -> None:
    with namespaces("near", "far") as (near, far):
        near_if, far_if = veth(near, "10.78.1.1/24", far, "10.78.1.2/24")
        gateway = "10.78.1.9"
        got: list[FastEvidence] = []

        async def publish(evidence: FastEvidence) -> None:
            got.append(evidence)

        watcher = LinkWatcher([LinkWatch("web", "r1", near_if, gateway)], publish, netns=near)
        stop = asyncio.Event()
        task = asyncio.create_task(watcher.run(stop))
        try:
            await asyncio.wait_for(watcher.ready.wait(), 5)
            # nobody owns the gateway address yet: ARP goes unanswered (INCOMPLETE)
            await run_in_netns(near, lambda: ping_once(gateway, 0.3))
            await wait_for(lambda: len(got) >= 1, 3, what="neighbour-unresolved")
            assert got[0].kind == "neighbour-unresolved" and got[0].gateway == gateway
            in_ns(far, "ip", "addr", "add", f"{gateway}/24", "dev", far_if)
            assert await run_in_netns(near, lambda: ping_once(gateway, 1.0)) == "ok"
            await wait_for(lambda: len(got) >= 2, 5, what="neighbour-resolved")
            assert got[1].kind == "neighbour-resolved"
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
