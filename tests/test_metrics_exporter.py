"""`/metrics` scraped over a real socket while the aggregator runs on a real nats-server."""

from __future__ import annotations

import asyncio
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from aggregator.service import run_aggregator
from pathwatch.runtime.bus import Bus, BusOptions
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.embedded import EmbeddedNats, free_port
from schemas import subjects
from schemas.codec import encode
from schemas.wire import Alarm, EnforcerLease, Measurement, MeasurementBatch, PathState
from tests.conftest import wait_for

CONFIG = parse_config(
    """
services:
  mtest:
    service-routes:
      r1:
        next-hop: {node: n1}
        reachability-detection: {detection-window: 1}
""",
    "test.yaml",
).config


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float | None:
    for (sample_name, sample_labels), figure in samples(text).items():
        if sample_name == name and set(labels.items()) <= set(sample_labels):
            return figure
    return None


async def test_metrics_show_lanes_paths_alarms_and_ingest(
    bus: Bus, nats_server: EmbeddedNats
) -> None:
    client = await Bus.connect(BusOptions.from_url(nats_server.url, name="metrics-client"))
    port = free_port()
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(
        run_aggregator(CONFIG, bus, stop=stop, metrics_listen=f"127.0.0.1:{port}", ready=ready)
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        await wait_for(ready.is_set, 5, what="aggregator")
        now = time.time()
        items = [
            Measurement(ts=now, protocol="tcp", destination="127.0.0.1", latency_ms=v)
            for v in (2.0, 4.0, 6.0)
        ] + [Measurement(ts=now, protocol="tcp", destination="127.0.0.1", outcome="timeout")]
        batch = MeasurementBatch(
            agent="m1", node="n1", seq=1, sent=now, service="mtest", route="r1", items=items
        )
        await client.nc.publish("pw.meas.mtest.r1", encode(batch))
        await client.nc.publish("pw.meas.mtest.r1", b"{not json")
        kv = await client.kv(subjects.KV_PATHS)
        held = "probes not passed since the fault: tcp/high 0 of 3 replies ok in a row"
        await kv.put(
            "mtest.r2",
            encode(PathState(service="mtest", route="r2", state="down", recovery_held=held)),
        )
        await kv.put(
            "mtest.r1",
            encode(PathState(service="mtest", route="r1", state="up", meets_sla=True)),
        )
        await client.js.publish(
            subjects.alarm("mtest", "r1"),
            encode(Alarm(id="m-alarm-1", status="raised", service="mtest", cause="path-down")),
        )
        await client.nc.flush()

        async def scrape() -> str:
            async with httpx.AsyncClient() as http:
                response = await http.get(url)
            assert response.status_code == 200
            return response.text

        async def ready_to_check() -> bool:
            text = await scrape()
            return (
                value(text, "pathwatch_lane_latency_median_seconds", service="mtest") is not None
                and value(text, "pathwatch_path_up", service="mtest") is not None
                and value(text, "pathwatch_alarms_active", service="mtest") is not None
            )

        await wait_for(ready_to_check, 10, interval=0.1, what="metrics of the closed window")
        text = await scrape()
        lane = {"service": "mtest", "route": "r1", "protocol": "tcp"}
        assert value(text, "pathwatch_lane_latency_median_seconds", **lane) == 0.004
        assert value(text, "pathwatch_lane_latency_min_seconds", **lane) == 0.002
        assert value(text, "pathwatch_lane_latency_max_seconds", **lane) == 0.006
        assert value(text, "pathwatch_lane_tte_max_seconds", **lane) == 0.006
        assert value(text, "pathwatch_lane_loss_ratio", **lane) == 0.25
        assert value(text, "pathwatch_lane_error_ratio", **lane) == 0.25
        # per-destination lanes are off by default: no series names a destination
        assert value(text, "pathwatch_lane_samples", destination="127.0.0.1") is None
        assert value(text, "pathwatch_path_up", service="mtest", route="r1") == 1.0
        assert value(text, "pathwatch_path_meets_sla", service="mtest", route="r1") == 1.0
        assert value(text, "pathwatch_path_recovery_held", service="mtest", route="r1") == 0.0
        assert value(text, "pathwatch_path_recovery_held", service="mtest", route="r2") == 1.0
        assert value(text, "pathwatch_alarms_active", service="mtest", cause="path-down") == 1.0
        assert value(text, "pathwatch_ingest_measurements_total") == 4.0
        assert value(text, "pathwatch_ingest_malformed_total", reason="json") == 1.0

        await client.js.publish(
            subjects.alarm("mtest", "r1"),
            encode(Alarm(id="m-alarm-1", status="cleared", service="mtest", cause="path-down")),
        )

        async def cleared() -> bool:
            return value(await scrape(), "pathwatch_alarms_active", service="mtest") is None

        await wait_for(cleared, 5, interval=0.1, what="the alarm to clear")

        leases = await client.kv(subjects.KV_LEASES)
        expires = time.time() + 3600
        await leases.put(
            subjects.LEASE_ENFORCER, encode(EnforcerLease(holder="m-holder", expires=expires))
        )

        async def lease_exported() -> bool:
            text = await scrape()
            found = value(
                text, "pathwatch_enforcer_lease_expires_timestamp_seconds", holder="m-holder"
            )
            return found is not None and abs(found - expires) < 1e-3

        await wait_for(lease_exported, 5, interval=0.1, what="the lease metric")
        await leases.delete(subjects.LEASE_ENFORCER)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await client.close()
