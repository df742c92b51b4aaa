"""Passive learning end to end through the real nats-server: the agent follows
conntrack in a namespace bed with two links to one service; sessions over
link 2 are reset by the far side, sessions over link 1 succeed. The agent
publishes passive MeasurementBatches per route; the aggregator and enforcer
(when importable) take link 2 out of service in KV `pathwatch-paths` while
link 1 stays up."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from agents.agent import Agent, AgentOptions
from agents.nsexec import run_in_netns
from aggregator.service import run_aggregator
from enforcer.service import run_enforcer
from pathwatch.runtime.bus import Bus, BusOptions
from pathwatch.runtime.configfile import parse_config
from schemas import subjects
from schemas.codec import decode_message
from schemas.config import PathwatchConfig
from schemas.wire import MeasurementBatch, PathState
from tests.conftest import wait_for
from tests.netns import nft, requires_nft, requires_root
from tests.test_passive_beds import (
    FAR_SERVICE,
    NEAR_1,
    NEAR_2,
    TCP_PORT,
    PassiveBed,
    config_yaml,
    far_listener,
    passive_bed,
)


class Batches:
    def __init__(self) -> None:
        self.by_route: dict[str, list[MeasurementBatch]] = {}

    async def on_msg(self, msg: Any) -> None:
        batch = decode_message(msg.data, MeasurementBatch)
        self.by_route.setdefault(batch.route, []).append(batch)

    def outcomes(self, route: str) -> Counter[str]:
        return Counter(
            item.outcome
            for batch in self.by_route.get(route, [])
            for item in batch.items
            if item.source == "passive"
        )


def keep_connecting(stop: threading.Event) -> int:
    """One connect over each link every 20 ms until `stop`; returns how many were made."""
    made = 0
    while not stop.is_set():
        for source in (NEAR_1, NEAR_2):
            with socket.socket() as client:
                client.settimeout(1)
                client.bind((source, 0))
                with contextlib.suppress(OSError):
                    client.connect((FAR_SERVICE, TCP_PORT))
                made += 1
        stop.wait(0.02)
    return made


async def path_state(bus: Bus, route: str) -> PathState | None:
    kv = await bus.kv(subjects.KV_PATHS)
    try:
        entry = await kv.get(subjects.path_key("web", route))
    except Exception:
        return None
    return decode_message(entry.value or b"", PathState)


@contextlib.asynccontextmanager
async def judges(config: PathwatchConfig, nats_url: str, tmp: Path) -> AsyncIterator[None]:
    """The real aggregator and enforcer on their own connections."""
    buses = [await Bus.connect(BusOptions.from_url(nats_url, name=n)) for n in ("agg", "enf")]
    stop = asyncio.Event()
    ready = asyncio.Event()
    tasks = [
        asyncio.create_task(run_aggregator(config, buses[0], stop=stop, ready=ready)),
        asyncio.create_task(
            run_enforcer(
                config, buses[1], stop=stop, instance="passive-e2e", store_path=tmp / "enf.db"
            )
        ),
    ]
    try:
        await asyncio.wait_for(ready.wait(), 10)
        yield
    finally:
        stop.set()
        await asyncio.wait(tasks, timeout=15)
        for bus in buses:
            await bus.close()


@requires_root
@requires_nft
async def test_failing_link_goes_out_of_service_while_the_other_stays_up(
    bus: Bus, nats_url: str, tmp_path: Path
) -> None:
    await (await bus.kv(subjects.KV_PATHS)).purge("web.link1")
    await (await bus.kv(subjects.KV_PATHS)).purge("web.link2")
    seen = Batches()
    await bus.nc.subscribe("pw.meas.web.*", cb=seen.on_msg)
    await bus.nc.flush()
    with passive_bed(links=2) as bed:
        reset_link2(bed)
        config = parse_config(config_yaml(bed)).config
        listener = far_listener(bed)
        agent_bus = await Bus.connect(BusOptions.from_url(nats_url, name="passive-agent"))
        agent = Agent(
            config,
            agent_bus,
            agent_name="pa",
            node="n1",
            options=AgentOptions(heartbeat_interval=0.5, link_netns=bed.near),
        )
        agent_stop = asyncio.Event()
        load_stop = threading.Event()
        try:
            async with judges(config, nats_url, tmp_path):
                agent_task = asyncio.create_task(agent.run(agent_stop))
                load = asyncio.create_task(run_in_netns(bed.near, lambda: _load(load_stop)))

                async def link2_down() -> bool:
                    state = await path_state(bus, "link2")
                    return state is not None and not state.in_service

                await wait_for(link2_down, 25, interval=0.2, what="link2 out of service")

                async def link1_up() -> bool:
                    state = await path_state(bus, "link1")
                    return state is not None and state.state == "up"

                await wait_for(link1_up, 15, interval=0.2, what="link1 judged up")
                link1 = await path_state(bus, "link1")
                link2 = await path_state(bus, "link2")
                load_stop.set()
                await load
                agent_stop.set()
                await asyncio.wait_for(agent_task, 15)
        finally:
            load_stop.set()
            agent_stop.set()
            listener.close()
            await agent_bus.close()
    assert link2 is not None and link2.state == "down" and not link2.in_service
    # taken down on passive evidence alone (fast path or window error threshold)
    assert "tcp/high" in link2.reason
    assert "close-before-establishment" in link2.reason or "error" in link2.reason
    assert link1 is not None and link1.in_service and link1.state == "up"
    assert set(seen.outcomes("link1")) == {"ok"}
    assert set(seen.outcomes("link2")) == {"close-before-establishment"}
    for batches in seen.by_route.values():
        assert all(item.source == "passive" for batch in batches for item in batch.items)


@requires_root
@requires_nft
async def test_agent_publishes_passive_batches_per_route(bus: Bus, nats_url: str) -> None:
    seen = Batches()
    await bus.nc.subscribe("pw.meas.web.*", cb=seen.on_msg)
    await bus.nc.flush()
    with passive_bed(links=2) as bed:
        reset_link2(bed)
        config = parse_config(config_yaml(bed)).config
        listener = far_listener(bed)
        agent_bus = await Bus.connect(BusOptions.from_url(nats_url, name="passive-agent-2"))
        agent = Agent(
            config,
            agent_bus,
            agent_name="pb",
            node="n1",
            options=AgentOptions(heartbeat_interval=0.5, link_netns=bed.near),
        )
        stop = asyncio.Event()
        load_stop = threading.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            await wait_for(lambda: agent.passive is not None, 5, what="the passive source")
            assert agent.passive is not None
            await asyncio.wait_for(agent.passive.ready.wait(), 10)
            load = asyncio.create_task(run_in_netns(bed.near, lambda: _load(load_stop)))
            await wait_for(
                lambda: (
                    seen.outcomes("link2")["close-before-establishment"] >= 20
                    and seen.outcomes("link1")["ok"] >= 20
                ),
                10,
                what="sessions on both links",
            )
            load_stop.set()
            made = await load
            stop.set()
            await asyncio.wait_for(task, 15)
        finally:
            load_stop.set()
            stop.set()
            listener.close()
            await agent_bus.close()
    assert set(seen.outcomes("link1")) == {"ok"}
    assert set(seen.outcomes("link2")) == {"close-before-establishment"}
    # nothing lost: every session the clients opened was learned and published
    learned = sum(seen.outcomes("link1").values()) + sum(seen.outcomes("link2").values())
    assert learned == made
    heartbeat = agent.heartbeat().counters
    assert heartbeat["passive_learned"] == made
    assert heartbeat["passive_overruns"] == 0
    # pre-aggregated: far fewer messages than sessions
    messages = sum(len(batches) for batches in seen.by_route.values())
    assert messages < learned


def reset_link2(bed: PassiveBed) -> None:
    """The far side resets every connection that arrives over link 2."""
    nft(
        bed.far,
        "table inet pwreset {\n chain inp {\n  type filter hook input priority -10;\n"
        f"  iifname {bed.far_ifs[1]} tcp dport {TCP_PORT} reject with tcp reset\n }}\n}}\n",
    )


async def _load(stop: threading.Event) -> int:
    return keep_connecting(stop)
