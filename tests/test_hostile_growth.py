"""What grows with input stays bounded, in a real `pathwatch up`, memory printed.

* Many destinations: 40 batches of 100 distinct destinations for one route, then
  one batch of 8,000 (about 860 kB): the process keeps running, the window is
  published with at most `MAX_UNLISTED_LANES` lanes the config does not name.
* Many names: 20,000 heartbeats from made-up agent names (half on nodes nobody
  configured, half on the configured node) and 60,000 batches from made-up agent
  names: at most `MAX_AGENTS_PER_NODE` agent-lost alarms, and the second half of
  the batches adds (almost) no memory: the per-agent tables are full and evict.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from pathwatch.runtime.bus import Bus
from pathwatch.runtime.embedded import EmbeddedNats
from schemas import subjects
from schemas.limits import MAX_AGENTS_PER_NODE, MAX_UNLISTED_LANES
from schemas.wire import AgentHeartbeat, Alarm, Measurement, MeasurementBatch, WindowStats
from tests.conftest import wait_for
from tests.hostile_up import running_up, stream_messages

pytestmark = pytest.mark.slow

SERVICE = "growth"
NAMES = 90_000


@pytest.fixture
def up(nats_server: EmbeddedNats, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with running_up(nats_server.url, tmp_path, SERVICE) as running:
        yield running.process


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _batch(agent: str, seq: int, destinations: list[str]) -> bytes:
    now = time.time()
    items = [
        Measurement(ts=now, protocol="icmp", probe="ping", destination=d, latency_ms=1.0)
        for d in destinations
    ]
    batch = MeasurementBatch(
        agent=agent, node="local", seq=seq, sent=now, service=SERVICE, route="r1", items=items
    )
    return msgspec.json.encode(batch)


def _heartbeat(agent: str, node: str) -> bytes:
    beat = AgentHeartbeat(
        agent=agent, node=node, version="1", config_hash="x", ts=time.time(), interval_s=0.1
    )
    return msgspec.json.encode(beat)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _settled(bus: Bus, process: subprocess.Popen[bytes]) -> float:
    """RSS once the process has taken in what was sent: its CPU use back to idle."""
    await bus.nc.flush()

    async def idle() -> bool:
        assert process.poll() is None, "pathwatch up exited"
        before = _cpu_s(process.pid)
        await asyncio.sleep(0.5)
        return _cpu_s(process.pid) - before < 0.15

    await wait_for(idle, 30, what="pathwatch up idle")
    return _rss_mb(process.pid)


async def test_many_destinations_and_many_names_stay_bounded(
    bus: Bus, up: subprocess.Popen[bytes]
) -> None:
    windows: list[WindowStats] = []

    async def on_window(msg: object) -> None:
        windows.append(msgspec.json.decode(msg.data, type=WindowStats))  # type: ignore[attr-defined]

    await bus.nc.subscribe(subjects.stats(SERVICE, "r1"), cb=on_window)
    await wait_for(lambda: bool(windows), 30, what="a first window")
    subject = subjects.meas(SERVICE, "r1")
    start_mb = await _settled(bus, up)

    # --- many destinations ------------------------------------------------------
    sent_at = time.time()
    for seq in range(40):
        destinations = [f"127.2.{seq}.{i}" for i in range(100)]
        await bus.nc.publish(subject, _batch("wide", seq, destinations))
    big = _batch("wide", 40, [f"127.3.{i // 250}.{i % 250}" for i in range(8000)])
    await bus.nc.publish(subject, big)
    await wait_for(lambda: any(w.window_start > sent_at for w in windows), 10, what="next window")
    wide = [w for w in windows if w.window_end > sent_at]
    most_lanes = max(len({lane.destination for lane in w.lanes} - {"", "127.0.0.1"}) for w in wide)
    after_destinations_mb = await _settled(bus, up)
    print(
        f"\nmany destinations: 4,000 + 8,000 in batches (largest {len(big) / 1000:.0f} kB),"
        f" at most {most_lanes} unnamed destination lanes in a window;"
        f" RSS {start_mb:.1f} -> {after_destinations_mb:.1f} MB"
    )
    assert most_lanes <= MAX_UNLISTED_LANES

    # --- many names -------------------------------------------------------------
    for n in range(20_000):
        node = "local" if n % 2 else f"nowhere-{n}"
        await bus.nc.publish(
            subjects.heartbeat(node, f"made-up-{n}"), _heartbeat(f"made-up-{n}", node)
        )
    rss = [after_destinations_mb]
    for n in range(NAMES):
        await bus.nc.publish(subject, _batch(f"name-{n}", 1, ["127.0.0.1"]))
        if n % 2000 == 1999:
            await asyncio.sleep(0.05)  # a steady rate, not one backlog
        if n % (NAMES // 3) == NAMES // 3 - 1:
            rss.append(await _settled(bus, up))
    print(
        f"many names: 20,000 heartbeats, then {NAMES:,} batches from made-up agents;"
        f" RSS {' -> '.join(f'{mb:.1f}' for mb in rss)} MB (every {NAMES // 3:,} names)"
    )
    # the tables fill in the first third; the last third adds (almost) nothing
    assert rss[3] - rss[2] < 0.25 * (rss[1] - rss[0]) + 3

    # made-up agents on the configured node fall silent at once: 3 windows of 1 s
    await asyncio.sleep(4)
    system = f"{subjects.ALARM_PREFIX}.{subjects.SYSTEM_SERVICE}.>"
    alarms = [
        alarm
        for alarm in await stream_messages(bus, system, Alarm)
        if alarm.agent.startswith("made-up-") and alarm.cause == "agent-lost"
    ]
    print(f"agent-lost alarms for 20,000 made-up names: {len(alarms)}")
    assert 0 < len(alarms) <= MAX_AGENTS_PER_NODE
    assert up.poll() is None
