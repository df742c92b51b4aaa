"""Suspicion re-probing end to end: a real agent, a real nats-server, real packets.

* In a namespace bed, a blackhole (nftables drop in the far namespace) is confirmed
  by re-probes: `consecutive-failures` evidence arrives on `pw.fast.*` from the
  agent itself, with the re-probes that confirmed it and its hop times, for ICMP,
  UDP and TCP probes.
* On loopback, one lost reply (an echo server that ignores one request) puts the
  target in confirm mode, a re-probe answers, and no evidence is published.

Timings are measured by `pathwatch bench failover`, not asserted here.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from nats.aio.msg import Msg

from agents.agent import Agent, AgentOptions
from agents.nsexec import run_in_netns, socket_in_netns
from pathwatch.runtime.bus import Bus, BusOptions
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.embedded import EmbeddedNats, free_port
from schemas import subjects
from schemas.codec import decode_message
from schemas.config import PathwatchConfig
from schemas.wire import FastEvidence
from tests.conftest import wait_for
from tests.netns import in_ns, requires_nft, requires_root
from tests.test_probe_beds import FAR_SERVICE, bed

PORT = 7107

PROFILES = {
    "udp": "udp-probe-profiles:\n  p: {{probe-interval: 0.2, number-of-attempts: 1,"
    " probe-duration: 0.2, probe-address: [{address}], port: {port}}}\n",
    "tcp": "tcp-probe-profiles:\n  p: {{probe-interval: 0.2, number-of-attempts: 1,"
    " probe-duration: 0.2, probe-address: [{address}], port: {port}}}\n",
    "icmp": "icmp-probe-profiles:\n  p: {{probe-interval: 1, number-of-attempts: 1,"
    " probe-duration: 1, probe-address: [{address}]}}\n",
}

ROUTE = """services:
  svc:
    service-routes:
      r1:
        next-hop: {{node: n1, interface: {interface}}}
        reachability-detection:
          consecutive-failures: 3
          probes: [{{name: p, {kind}-probe-profile: p}}]
"""


def config_for(kind: str, address: str, interface: str, port: int) -> PathwatchConfig:
    text = PROFILES[kind].format(address=address, port=port)
    text += ROUTE.format(interface=interface, kind=kind)
    return parse_config(text).config


class Echo:
    """A UDP echo or TCP listener on a socket the test made; `ignore` drops UDP requests."""

    def __init__(self, sock: socket.socket, kind: str) -> None:
        self.sock = sock
        self.kind = kind
        self.ignore = 0
        self.requests = 0
        sock.setblocking(False)
        if kind == "tcp":
            sock.listen(64)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            if self.kind == "tcp":
                self.sock.accept()[0].close()
                return
            data, peer = self.sock.recvfrom(2048)
            self.requests += 1
            if self.ignore > 0:
                self.ignore -= 1
                return
            self.sock.sendto(data, peer)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


@contextlib.asynccontextmanager
async def running_agent(
    config: PathwatchConfig, url: str
) -> AsyncIterator[tuple[Agent, list[FastEvidence]]]:
    """An agent of node n1 on `url`, and the fast evidence seen on the bus."""
    seen: list[FastEvidence] = []

    async def on_fast(msg: Msg) -> None:
        seen.append(decode_message(msg.data, FastEvidence))

    observer = await Bus.connect(BusOptions.from_url(url, name="test-observer"))
    agent_bus = await Bus.connect(BusOptions.from_url(url, name="test-agent"))
    await observer.nc.subscribe(subjects.FAST_ALL, cb=on_fast)
    await observer.nc.flush()
    agent = Agent(
        config, agent_bus, agent_name="a1", node="n1", options=AgentOptions(heartbeat_interval=1)
    )
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        yield agent, seen
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await agent_bus.close()
        await observer.close()


def replies(agent: Agent, count: int) -> Callable[[], bool]:
    """Whether every watched target has RTT samples from `count` replies."""
    watches = [watch for group in agent.watches.values() for watch in group]
    return lambda: bool(watches) and all(watch.rtt.samples >= count for watch in watches)


@requires_root
@requires_nft
@pytest.mark.parametrize("kind", ["udp", "tcp", "icmp"])
async def test_a_blackhole_is_confirmed_by_reprobes_and_published_by_the_agent(
    kind: str, tmp_path: Path
) -> None:
    with bed() as made:

        async def inside() -> FastEvidence:
            nats = EmbeddedNats(store_dir=tmp_path / "nats", port=free_port())
            await asyncio.to_thread(nats.start)
            echo: Echo | None = None
            try:
                if kind != "icmp":
                    stype = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
                    sock = socket_in_netns(made.far, socket.AF_INET, stype)
                    sock.bind((FAR_SERVICE, PORT))
                    echo = Echo(sock, kind)
                config = config_for(kind, FAR_SERVICE, made.near_ifs[0], PORT)
                async with running_agent(config, nats.url) as (agent, seen):
                    await wait_for(replies(agent, 2), 10, what="replies before the fault")
                    in_ns(
                        made.far,
                        "nft",
                        "add table inet t; add chain inet t in"
                        " { type filter hook input priority 0; policy drop; }",
                    )
                    await wait_for(lambda: bool(seen), 10, what="consecutive-failures evidence")
                    assert agent.counters["confirm_evidence"] == 1
                    return seen[0]
            finally:
                if echo is not None:
                    echo.close()
                await asyncio.to_thread(nats.stop)

        evidence = await run_in_netns(made.near, inside)
    assert evidence.kind == "consecutive-failures"
    assert (evidence.service, evidence.route, evidence.protocol) == ("svc", "r1", kind)
    assert (evidence.probe, evidence.destination, evidence.source) == ("p", FAR_SERVICE, "probe")
    assert evidence.count == 3
    assert evidence.reprobes == 2  # the first miss and two re-probes
    hops = evidence.hops
    assert hops is not None and None not in (hops.probe_sent, hops.loss_noticed, hops.published)
    assert hops.probe_sent <= hops.loss_noticed <= hops.published  # type: ignore[operator]
    assert hops.forwarded is None  # not through the aggregator


async def test_one_lost_reply_is_reprobed_and_takes_nothing_down(nats_url: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    echo = Echo(sock, "udp")
    config = config_for("udp", "127.0.0.1", "lo", sock.getsockname()[1])
    try:
        async with running_agent(config, nats_url) as (agent, seen):
            await wait_for(replies(agent, 3), 10, what="replies before the loss")
            before = echo.requests
            cleared = agent.counters["confirm_cleared"]
            reprobes = agent.counters["confirm_reprobes"]
            echo.ignore = 1
            await wait_for(
                lambda: agent.counters["confirm_cleared"] > cleared, 10, what="a re-probe answered"
            )
            assert echo.ignore == 0  # the lost request was one of ours
            assert agent.counters["confirm_reprobes"] > reprobes
            assert echo.requests > before + 1  # the lost request and the re-probe
            await agent.bus.nc.flush()
            assert agent.counters["confirm_evidence"] == 0
            assert not [e for e in seen if e.kind == "consecutive-failures"]
    finally:
        echo.close()


async def test_a_stopping_agent_publishes_no_evidence(nats_url: str) -> None:
    """Failures seen while the agent stops are no evidence (in `pathwatch up` the targets
    on the host, the API say, stop beside it): they are counted, not published."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    echo = Echo(sock, "udp")
    config = config_for("udp", "127.0.0.1", "lo", sock.getsockname()[1])
    evidence = FastEvidence(service="svc", route="r1", ts=time.time(), kind="link-down")
    try:
        async with running_agent(config, nats_url) as (agent, seen):
            await wait_for(replies(agent, 1), 10, what="the agent probing")
            await agent._publish_fast(evidence)  # running: published
            await wait_for(lambda: len(seen) == 1, 5, what="the evidence of a running agent")
            await agent._drain()  # what a stop does first
            await agent._publish_fast(evidence)
            await agent.bus.nc.flush()
            assert len(seen) == 1
            assert agent.counters["fast_withheld_stopping"] == 1
    finally:
        echo.close()
