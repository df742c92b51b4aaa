"""A real scrape of the aggregator's `/metrics` passes `promtool check metrics`: base units
(seconds, ratios 0-1), `_total` counters, and no label exported without a value."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aggregator.service import run_aggregator
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.embedded import free_port
from schemas import subjects
from schemas.codec import encode
from schemas.wire import Alarm, EnforcerLease, Measurement, MeasurementBatch, PathState
from tests.conftest import wait_for

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is absent (Debian package `prometheus`, installed by scripts/test as root)",
)

# Per-destination lanes on, so the scrape has both kinds of lane series.
CONFIG = parse_config(
    """
metrics: {per-destination: true}
services:
  ptool:
    service-routes:
      r1:
        next-hop: {node: n1}
        reachability-detection: {detection-window: 1}
""",
    "test.yaml",
).config


def batch(now: float) -> MeasurementBatch:
    items = [
        Measurement(ts=now, protocol=protocol, destination="127.0.0.1", probe="p", latency_ms=v)
        for protocol in ("icmp", "tcp")
        for v in (1.0, 3.0)
    ] + [Measurement(ts=now, protocol="tcp", destination="127.0.0.1", outcome="timeout")]
    return MeasurementBatch(
        agent="ptool-agent", node="n1", seq=1, sent=now, service="ptool", route="r1", items=items
    )


async def feed(bus: Bus) -> None:
    """One window of lanes, a path state, a route alarm, a system alarm and a lease."""
    now = time.time()
    await bus.nc.publish(subjects.meas("ptool", "r1"), encode(batch(now)))
    await bus.nc.publish(subjects.meas("ptool", "r1"), b"{not json")
    paths = await bus.kv(subjects.KV_PATHS)
    await paths.put("ptool.r1", encode(PathState(service="ptool", route="r1", state="up")))
    await bus.js.publish(
        subjects.alarm("ptool", "r1"),
        encode(Alarm(id="ptool-a1", status="raised", service="ptool", cause="path-down")),
    )
    await bus.js.publish(
        subjects.system_alarm("ptool-agent"),
        encode(Alarm(id="ptool-a2", status="raised", cause="agent-lost", agent="ptool-agent")),
    )
    leases = await bus.kv(subjects.KV_LEASES)
    await leases.put(
        subjects.LEASE_ENFORCER, encode(EnforcerLease(holder="ptool", expires=now + 3600))
    )


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )


def families(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text) if family.samples}


async def test_a_real_scrape_passes_promtool_check_metrics(bus: Bus) -> None:
    port = free_port()
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(
        run_aggregator(CONFIG, bus, stop=stop, metrics_listen=f"127.0.0.1:{port}", ready=ready)
    )
    wanted = {
        "pathwatch_lane_samples",
        "pathwatch_path_up",
        "pathwatch_alarms_active",
        "pathwatch_enforcer_lease_expires_timestamp_seconds",
        "pathwatch_ingest_malformed",
    }
    text = ""

    async def scraped_everything() -> bool:
        nonlocal text
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        return wanted <= families(text) and 'destination="127.0.0.1"' in text

    try:
        await wait_for(ready.is_set, 5, what="aggregator")
        await feed(bus)
        await wait_for(scraped_everything, 10, interval=0.1, what="every metric family")
    finally:
        stop.set()
        leases = await bus.kv(subjects.KV_LEASES)
        await leases.delete(subjects.LEASE_ENFORCER)
        await asyncio.wait_for(task, 5)
    checked = await asyncio.to_thread(promtool_check_metrics, text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert '=""' not in text, [line for line in text.splitlines() if '=""' in line]
    assert "pathwatch_alarms_active{cause=" in text  # the system alarm, without a service label
