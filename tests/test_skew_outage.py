"""Clock skew is judged on fresh batches only, through a real NATS outage: a real agent
and aggregator on a nats-server of their own, which is frozen (SIGSTOP) for longer
than `skew-alarm-after`. The batches the agent made meanwhile arrive all at once when
the server thaws, up to the outage behind; no clock-skew alarm is raised for them.
(With `skew-alarm-after: 0`, the old rule, the same outage raises a false alarm.)
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.msg import Msg

from agents.agent import run_agent
from aggregator.core import Aggregator
from aggregator.service import run_aggregator
from pathwatch.runtime.bus import Bus, BusOptions
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.embedded import EmbeddedNats, free_port
from schemas.codec import decode_message
from schemas.wire import Alarm
from tests.conftest import wait_for

OUTAGE_S = 4.0
SPAN_S = 2.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    with EmbeddedNats(store_dir=tmp_path / "nats") as running:
        yield running


async def test_batches_delayed_by_a_frozen_server_raise_no_skew_alarm(
    server: EmbeddedNats,
) -> None:
    config = parse_config(
        f"aggregator: {{skew-alarm: 0.5, skew-alarm-after: {SPAN_S}}}\n"
        "tcp-probe-profiles:\n"
        "  svc: {probe-interval: 1, number-of-attempts: 1, probe-duration: 0.5,\n"
        f"        probe-address: [127.0.0.1], port: {free_port()}, traffic-classes: [high]}}\n"
        "services:\n  sk:\n    address: [127.0.0.1/32]\n    service-routes:\n"
        "      r1:\n        next-hop: {node: n1, interface: lo}\n"
        "        reachability-detection:\n"
        "          {detection-window: 1, probes: [{name: svc, tcp-probe-profile: svc}]}\n"
    ).config
    buses = [
        await Bus.connect(BusOptions.from_url(server.url, name=name)) for name in ("agg", "agent")
    ]
    await buses[0].ensure()
    alarms: list[Alarm] = []

    async def on_alarm(msg: Msg) -> None:
        alarms.append(decode_message(msg.data, Alarm))

    await buses[0].nc.subscribe("pw.alarm._system.>", cb=on_alarm)
    core = Aggregator(config)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(run_aggregator(config, buses[0], stop=stop, core=core)),
        asyncio.create_task(run_agent(config, buses[1], stop=stop, agent_name="sk", node="n1")),
    ]
    assert server.process is not None
    try:
        await wait_for(lambda: core.counters.batches >= 2, 15, what="the agent's first batches")
        server.process.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(OUTAGE_S)  # the outage itself: the agent keeps probing
        finally:
            server.process.send_signal(signal.SIGCONT)
        before = core.counters.batches
        await wait_for(
            lambda: core.counters.batches >= before + OUTAGE_S - 1, 15, what="the backlog"
        )
        after_burst = core.counters.batches
        await wait_for(
            lambda: core.counters.batches >= after_burst + SPAN_S + 1,
            15,
            what="fresh batches for longer than skew-alarm-after",
        )
        await buses[0].nc.flush()
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        for bus in buses:
            await bus.close()
    assert alarms == []
    assert abs(core.skew.estimate("sk") or 0.0) < 0.5
