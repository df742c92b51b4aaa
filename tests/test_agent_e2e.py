"""The agent end to end against a real nats-server: batches with increasing
seq, heartbeats with counters, node filtering, disabled probes, reload without
losing the round in flight, and a bounded outbox while NATS is down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agents.agent import Agent, AgentOptions
from agents.probe.registry import UnknownProbeKind
from pathwatch.runtime.bus import Bus, BusOptions
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.embedded import EmbeddedNats
from schemas.codec import decode_message
from schemas.config import PathwatchConfig
from schemas.wire import AgentHeartbeat, MeasurementBatch
from tests.conftest import wait_for
from tests.netns import requires_root

CONFIG = """
tcp-probe-profiles:
  fast:
    probe-interval: 0.2
    number-of-attempts: 1
    probe-duration: 0.1
    probe-address: [127.0.0.1]
    port: {port}
    traffic-classes: [high, best-effort]
icmp-probe-profiles:
  slow-ping:
    probe-interval: 1
    number-of-attempts: 4
    probe-duration: 1
    probe-address: [127.0.0.1]
services:
  web:
    service-routes:
      here:
        next-hop: {{node: n1, interface: lo}}
        reachability-detection:
          probes: [{{name: conn, tcp-probe-profile: fast}}]
      elsewhere:
        next-hop: {{node: n2, interface: lo}}
        reachability-detection:
          probes: [{{name: conn, tcp-probe-profile: fast}}]
      muted:
        next-hop: {{node: n1}}
        reachability-detection:
          probe-type: disabled
          probes: [{{name: conn, tcp-probe-profile: fast}}]
      {extra}
"""

PING_ROUTE = """pinged:
        next-hop: {node: n1}
        reachability-detection:
          probes: [{name: ping, icmp-probe-profile: slow-ping}]
"""


def config(port: int, extra: str = "") -> PathwatchConfig:
    return parse_config(CONFIG.format(port=port, extra=extra)).config


@contextlib.asynccontextmanager
async def listener() -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


class Collector:
    def __init__(self) -> None:
        self.batches: list[MeasurementBatch] = []
        self.heartbeats: list[AgentHeartbeat] = []

    async def on_meas(self, msg: object) -> None:
        self.batches.append(decode_message(msg.data, MeasurementBatch))  # type: ignore[attr-defined]

    async def on_hb(self, msg: object) -> None:
        self.heartbeats.append(decode_message(msg.data, AgentHeartbeat))  # type: ignore[attr-defined]

    async def subscribe(self, bus: Bus) -> None:
        await bus.nc.subscribe("pw.meas.>", cb=self.on_meas)
        await bus.nc.subscribe("pw.agent.hb.>", cb=self.on_hb)
        await bus.nc.flush()

    def routes(self) -> set[str]:
        return {b.route for b in self.batches}


@requires_root
async def test_batches_heartbeats_node_filter_and_reload(bus: Bus, nats_url: str) -> None:
    seen = Collector()
    await seen.subscribe(bus)
    agent_bus = await Bus.connect(BusOptions.from_url(nats_url, name="agent"))
    async with listener() as port:
        agent = Agent(
            config(port),
            agent_bus,
            agent_name="a1",
            node="n1",
            config_hash="h1",
            options=AgentOptions(heartbeat_interval=0.2),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            await wait_for(lambda: len(seen.batches) >= 5, 5, what="five batches")
            await wait_for(lambda: len(seen.heartbeats) >= 2, 5, what="two heartbeats")
            assert seen.routes() == {"here"}  # not n2's route, not the disabled one
            seqs = [b.seq for b in seen.batches]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
            batch = seen.batches[0]
            assert (batch.agent, batch.node, batch.service) == ("a1", "n1", "web")
            assert {(m.traffic_class, m.outcome, m.probe) for m in batch.items} == {
                ("high", "ok", "conn"),
                ("best-effort", "ok", "conn"),
            }
            heartbeat = seen.heartbeats[-1]
            assert heartbeat.agent == "a1" and heartbeat.config_hash == "h1"
            assert heartbeat.routes == ["web.here", "web.muted"]
            assert heartbeat.counters["batches_published"] >= 1
            assert heartbeat.counters["rounds"] >= 1
            for name in ("icmp_success", "icmp_response_timeout", "icmp_failed_to_send", "dropped"):
                assert name in heartbeat.counters

            # an unknown plugin in the new config is refused; the old plan keeps running
            bad = config(
                port,
                extra="broken:\n        next-hop: {node: n1}\n"
                "        reachability-detection:\n"
                "          probes: [{name: x, plugin: no-such-kind}]\n",
            )
            with pytest.raises(UnknownProbeKind):
                agent.reload(bad, "bad")

            # reload while a slow ICMP round of the new route is in flight...
            agent.reload(config(port, extra=PING_ROUTE), "h2")
            await wait_for(lambda: "pinged" in seen.routes(), 5, what="the new route's batch")
            await wait_for(
                lambda: seen.heartbeats[-1].config_hash == "h2", 5, what="heartbeat with new hash"
            )
            # ...then reload again mid-round: that round still publishes its batch
            await wait_for(
                lambda: any(t.get_name() == "round web.pinged" for t in agent._rounds),
                5,
                interval=0.005,
                what="a round of the new route in flight",
            )
            pinged_before = sum(b.route == "pinged" for b in seen.batches)
            agent.reload(config(port), "h3")
            await wait_for(
                lambda: sum(b.route == "pinged" for b in seen.batches) > pinged_before,
                5,
                what="the in-flight round's batch after reload",
            )
            late = [b for b in seen.batches if b.route == "pinged"][-1]
            assert [m.outcome for m in late.items] == ["ok"] * 4
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            await agent_bus.close()
    final = seen.heartbeats[-1]
    assert final.config_hash == "h3"


async def test_outbox_bounded_while_nats_is_down(tmp_path: Path) -> None:
    server = EmbeddedNats(store_dir=tmp_path / "nats")
    server.start()
    seen = Collector()
    watcher_bus: Bus | None = None
    agent_bus = await Bus.connect(BusOptions.from_url(server.url, name="agent"))
    try:
        async with listener() as port:
            agent = Agent(
                config(port),
                agent_bus,
                agent_name="a1",
                node="n1",
                options=AgentOptions(heartbeat_interval=0.2, outbox_capacity=5),
            )
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            try:
                await wait_for(
                    lambda: agent.counters["batches_published"] >= 2, 5, what="batches published"
                )
                server.stop()
                await wait_for(
                    lambda: agent.outbox.dropped >= 3, 10, what="outbox overflowing while down"
                )
                assert len(agent.outbox) == 5  # bounded: never more than the capacity
                assert agent.heartbeat().counters["dropped"] == agent.outbox.dropped

                server.start()
                watcher_bus = await Bus.connect(BusOptions.from_url(server.url, name="watch"))
                await seen.subscribe(watcher_bus)
                await wait_for(lambda: len(seen.batches) >= 3, 10, what="batches after reconnect")
                assert len(agent.outbox) <= 1
                seqs = [b.seq for b in seen.batches]
                assert seqs == sorted(seqs)
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)
    finally:
        await agent_bus.close()
        if watcher_bus is not None:
            await watcher_bus.close()
        server.stop()
