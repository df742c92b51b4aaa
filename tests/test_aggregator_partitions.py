"""Scale out: two aggregators behind deploy/nats/partitions.conf share the routes exactly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aggregator.partition import partition_of
from aggregator.service import run_aggregator
from pathwatch.runtime.bus import Bus, BusOptions
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.embedded import EmbeddedNats
from schemas.codec import encode
from schemas.wire import Measurement, MeasurementBatch, WindowStats
from tests.conftest import wait_for

MAPPING = Path(__file__).resolve().parent.parent / "deploy" / "nats" / "partitions.conf"
ROUTES = [f"route-{i}" for i in range(24)]
CONFIG = parse_config(
    "services:\n  part:\n    service-routes:\n"
    + "".join(
        f"      {route}:\n        next-hop: {{node: n1}}\n"
        "        reachability-detection: {detection-window: 1}\n"
        for route in ROUTES
    ),
    "test.yaml",
).config
BATCHES_PER_ROUTE = 3
ITEMS_PER_BATCH = 5


@pytest.fixture(scope="module")
def mapped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """A second real nats-server started with the shipped partition mapping."""
    server = EmbeddedNats(store_dir=tmp_path_factory.mktemp("nats-mapped"), config_file=MAPPING)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("with_mapping", [True, False], ids=["server-mapping", "client-filter"])
async def test_every_route_lands_on_exactly_one_aggregator(
    with_mapping: bool, mapped_server: EmbeddedNats, nats_server: EmbeddedNats
) -> None:
    url = mapped_server.url if with_mapping else nats_server.url
    buses = [await Bus.connect(BusOptions.from_url(url, name=f"agg-{k}")) for k in range(2)]
    client = await Bus.connect(BusOptions.from_url(url, name="publisher"))
    await buses[0].ensure()
    received: list[list[WindowStats]] = [[], []]
    stop = asyncio.Event()
    ready = [asyncio.Event(), asyncio.Event()]
    tasks = [
        asyncio.create_task(
            run_aggregator(
                CONFIG,
                buses[k],
                stop=stop,
                partition=k,
                partitions=2,
                on_window=received[k].append,
                ready=ready[k],
            )
        )
        for k in range(2)
    ]
    mapped: list[str] = []

    async def on_mapped(msg: object) -> None:
        mapped.append(msg.subject)  # type: ignore[attr-defined]

    await client.nc.subscribe("pw.meas.*.*.*", cb=on_mapped)
    try:
        await wait_for(lambda: all(r.is_set() for r in ready), 5, what="both aggregators")
        now = time.time()
        seq = 0
        for route in ROUTES:
            for _ in range(BATCHES_PER_ROUTE):
                seq += 1
                items = [
                    Measurement(ts=now, protocol="icmp", latency_ms=float(i))
                    for i in range(ITEMS_PER_BATCH)
                ]
                batch = MeasurementBatch(
                    agent="a1",
                    node="n1",
                    seq=seq,
                    sent=now,
                    service="part",
                    route=route,
                    items=items,
                )
                await client.nc.publish(f"pw.meas.part.{route}", encode(batch))
        await client.nc.flush()

        def routes_seen() -> int:
            return sum(len(windows) for windows in received)

        await wait_for(lambda: routes_seen() >= len(ROUTES), 10, what="a window of every route")
        owners: dict[str, list[int]] = {}
        for k, windows in enumerate(received):
            for stats in windows:
                owners.setdefault(stats.route, []).append(k)
                assert stats.lanes[0].count == BATCHES_PER_ROUTE * ITEMS_PER_BATCH
        assert sorted(owners) == sorted(ROUTES)
        for route, partitions in owners.items():
            assert partitions == [partition_of("part", route, 2)], route
        assert all(received), "both partitions got a share"
        published = len(ROUTES) * BATCHES_PER_ROUTE
        if with_mapping:
            await wait_for(lambda: len(mapped) == published, 5, what="mapped subjects")
            assert {s.split(".")[2] for s in mapped} == {"0", "1"}
        else:
            assert mapped == []
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for bus in [*buses, client]:
            await bus.close()
