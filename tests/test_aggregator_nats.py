"""The aggregator through a real nats-server: batches in; stats, fast evidence, alarms out."""

from __future__ import annotations

import asyncio
import time

from aggregator.core import Aggregator
from aggregator.service import run_aggregator
from pathwatch.runtime.bus import Bus, BusOptions
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.embedded import EmbeddedNats
from schemas.codec import decode_message, encode
from schemas.wire import Alarm, FastEvidence, Measurement, MeasurementBatch, WindowStats
from tests.conftest import wait_for

CONFIG = parse_config(
    """
aggregator: {skew-alarm-after: 0}  # one skewed batch raises at once
services:
  itest:
    address: [127.0.0.1/32]
    service-routes:
      r1:
        next-hop: {node: n1}
        reachability-detection: {detection-window: 1, consecutive-failures: 3}
""",
    "test.yaml",
).config


async def test_batches_become_window_stats_fast_evidence_and_skew_alarms(
    bus: Bus, nats_server: EmbeddedNats
) -> None:
    client = await Bus.connect(BusOptions.from_url(nats_server.url, name="test-client"))
    stats: list[WindowStats] = []
    fast: list[FastEvidence] = []
    alarms: list[Alarm] = []

    async def on_stats(msg: object) -> None:
        stats.append(decode_message(msg.data, WindowStats))  # type: ignore[attr-defined]

    async def on_fast(msg: object) -> None:
        fast.append(decode_message(msg.data, FastEvidence))  # type: ignore[attr-defined]

    async def on_alarm(msg: object) -> None:
        alarms.append(decode_message(msg.data, Alarm))  # type: ignore[attr-defined]

    await client.nc.subscribe("pw.stats.itest.r1", cb=on_stats)
    await client.nc.subscribe("pw.fast.itest.r1", cb=on_fast)
    await client.nc.subscribe("pw.alarm._system.skewed-agent", cb=on_alarm)
    await client.nc.flush()
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(run_aggregator(CONFIG, bus, stop=stop, ready=ready))
    try:
        await wait_for(ready.is_set, 5, what="aggregator subscriptions")
        now = time.time()
        items = [
            Measurement(
                ts=now, protocol="icmp", destination="127.0.0.1", probe="ping", latency_ms=v
            )
            for v in (1.0, 2.0, 4.0)
        ]
        items += [
            Measurement(ts=now, protocol="tcp", destination="127.0.0.1", outcome="refused")
            for _ in range(3)
        ]
        good = MeasurementBatch(
            agent="agent-1", node="n1", seq=1, sent=now, service="itest", route="r1", items=items
        )
        await client.nc.publish("pw.meas.itest.r1", encode(good))
        await client.nc.publish("pw.meas.itest.r1", encode(good))  # duplicate
        await client.nc.publish("pw.meas.itest.r1", b"garbage")
        skewed = MeasurementBatch(
            agent="skewed-agent",
            node="n1",
            seq=1,
            sent=now + 3.0,
            service="itest",
            route="r1",
            items=[Measurement(ts=now, protocol="icmp", latency_ms=3.0)],
        )
        await client.nc.publish("pw.meas.itest.r1", encode(skewed))
        await client.nc.flush()
        await wait_for(lambda: len(fast) == 1, 5, what="consecutive-failures evidence")
        assert fast[0].protocol == "tcp" and fast[0].count == 3
        await wait_for(lambda: len(alarms) == 1, 5, what="clock-skew alarm")
        assert alarms[0].cause == "clock-skew" and alarms[0].status == "raised"
        await wait_for(lambda: len(stats) >= 1, 5, what="WindowStats")
        window = stats[0]
        assert window.window_end - window.window_start == 1.0
        assert window.duplicates == 1
        by_lane = {(lane.protocol, lane.destination, lane.probe): lane for lane in window.lanes}
        assert by_lane[("icmp", "", "")].count == 4
        assert by_lane[("icmp", "", "")].latency_median_ms == 2.5
        assert by_lane[("icmp", "127.0.0.1", "ping")].count == 3
        assert by_lane[("tcp", "", "")].error_pct == 100.0
        assert sorted(window.agents) == ["agent-1", "skewed-agent"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await client.close()


async def test_the_service_ripens_ended_windows_and_a_late_measurement_still_counts(
    bus: Bus, nats_server: EmbeddedNats
) -> None:
    client = await Bus.connect(BusOptions.from_url(nats_server.url, name="test-client"))
    start = float(int(time.time()))  # a window of r1 (detection-window 1 s, lateness 0.5 s)
    clock = [start + 0.5]
    core = Aggregator(CONFIG)
    closed: list[WindowStats] = []
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(
        run_aggregator(
            CONFIG,
            bus,
            stop=stop,
            ready=ready,
            core=core,
            clock=lambda: clock[0],
            on_window=closed.append,
        )
    )

    def send(seq: int, ts: float, latency: float) -> bytes:
        item = Measurement(ts=ts, protocol="icmp", destination="127.0.0.1", latency_ms=latency)
        return encode(
            MeasurementBatch(
                agent="a1", node="n1", seq=seq, sent=ts, service="itest", route="r1", items=[item]
            )
        )

    try:
        await wait_for(ready.is_set, 5, what="aggregator subscriptions")
        await client.nc.publish("pw.meas.itest.r1", send(1, start + 0.5, 1.0))
        await client.nc.flush()
        await wait_for(lambda: core.counters.measurements == 1, 5, what="first measurement")
        window = core.book.routes[("itest", "r1")].windows[int(start)]
        clock[0] = start + 1.1  # ended, not yet closed
        await wait_for(lambda: window.ripe_lanes is not None, 5, what="window ripened")
        assert closed == []
        await client.nc.publish("pw.meas.itest.r1", send(2, start + 0.9, 7.0))
        await client.nc.flush()
        await wait_for(lambda: core.counters.measurements == 2, 5, what="late measurement")
        clock[0] = start + 1.5
        await wait_for(lambda: len(closed) == 1, 5, what="window closed")
        aggregate = closed[0].lanes[0]
        assert (aggregate.count, aggregate.latency_max_ms) == (2, 7.0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await client.close()
