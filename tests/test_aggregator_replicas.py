"""Aggregator replicas against a real nats-server with the shipped partition mapping:
two `pathwatch aggregator` processes per partition (replicas a and b), a real enforcer.

Each replica receives all of its partition's measurements (no queue group), so every
window it publishes holds the exact count that was published; the enforcer judges
exactly one copy per (route, window start). Replica a of partition 0 is killed (SIGKILL)
in the middle of a window: no window is lost (b made it too) and none is judged twice;
afterwards the path states, and b's /metrics, name b as the replica whose windows are
judged.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from nats.aio.msg import Msg
from prometheus_client.parser import text_string_to_metric_families

from aggregator.partition import partition_of
from enforcer.engine import Engine, Outputs
from enforcer.service import run_enforcer
from pathwatch.runtime.bus import Bus, BusOptions
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.embedded import EmbeddedNats, free_port
from schemas import subjects
from schemas.codec import decode_message, encode
from schemas.wire import Measurement, MeasurementBatch, PathState, WindowStats
from tests.conftest import wait_for
from tests.processes import Process

MAPPING = Path(__file__).resolve().parent.parent / "deploy" / "nats" / "partitions.conf"
SERVICE = "rep"
CANDIDATES = [f"r{i}" for i in range(16)]
#: two routes in each partition of partitions.conf (N = 2), partition 0's first
ROUTES = [
    r for k in (0, 1) for r in [c for c in CANDIDATES if partition_of(SERVICE, c, 2) == k][:2]
]
ITEMS = 5
PERIOD_S = 0.1
WINDOWS_BEFORE_KILL = 3
WINDOWS_AFTER_KILL = 3


def config_text(url: str) -> str:
    routes = "".join(
        f"      {route}:\n        next-hop: {{node: n1, interface: lo}}\n"
        "        reachability-detection: {detection-window: 1, probes: []}\n"
        for route in ROUTES
    )
    return (
        f'nats: {{url: "{url}"}}\n'
        "services:\n"
        f"  {SERVICE}:\n    address: [127.0.0.1/32]\n    service-routes:\n{routes}"
    )


@pytest.fixture(scope="module")
def mapped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(store_dir=tmp_path_factory.mktemp("nats-replicas"), config_file=MAPPING)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def admin(mapped_server: EmbeddedNats) -> AsyncIterator[Bus]:
    bus = await Bus.connect(BusOptions.from_url(mapped_server.url, name="replicas-test"))
    await bus.ensure()
    try:
        yield bus
    finally:
        await bus.close()


class Judged:
    """Every window the real engine judged, seen through its own entry point."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.windows: list[WindowStats] = []
        judge = Engine.on_window_payload

        def spy(engine: Engine, service: str, route: str, payload: bytes) -> Outputs:
            self.windows.append(decode_message(payload, WindowStats))
            return judge(engine, service, route, payload)

        monkeypatch.setattr(Engine, "on_window_payload", spy)


def aggregator_args(config: Path, partition: int, replica: str, port: int) -> list[str]:
    return [
        "aggregator", "-c", str(config), "--partition", str(partition), "--partitions", "2",
        "--replica", replica, "--store", "", "--metrics", f"127.0.0.1:{port}",
    ]  # fmt: skip


async def publish_measurements(bus: Bus, until: float, published: Counter[tuple[str, int]]) -> None:
    """ITEMS measurements per route every PERIOD_S, counted per (route, window start)."""
    seq = 0
    while (now := time.time()) < until:
        for route in ROUTES:
            seq += 1
            items = [Measurement(ts=now, protocol="icmp", latency_ms=1.0)] * ITEMS
            batch = MeasurementBatch(
                agent="a1", node="n1", seq=seq, sent=now, service=SERVICE, route=route, items=items
            )
            await bus.nc.publish(subjects.meas(SERVICE, route), encode(batch))
            published[(route, math.floor(now))] += ITEMS
        await bus.nc.flush()
        await asyncio.sleep(PERIOD_S)  # the publishing rate, not a readiness wait


async def test_replicas_give_exact_windows_and_losing_one_loses_none(
    admin: Bus, mapped_server: EmbeddedNats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = tmp_path / "pathwatch.yaml"
    config_path.write_text(config_text(mapped_server.url))
    ports = {(k, name): free_port() for k in (0, 1) for name in ("a", "b")}
    aggregators = {
        (k, name): Process.start(
            f"aggregator-{k}{name}", aggregator_args(config_path, k, name, port), tmp_path
        )
        for (k, name), port in ports.items()
    }
    copies: list[WindowStats] = []

    async def on_stats(msg: Msg) -> None:
        copies.append(decode_message(msg.data, WindowStats))

    await admin.nc.subscribe("pw.stats.>", cb=on_stats)
    judged = Judged(monkeypatch)
    stop = asyncio.Event()
    config = parse_config(config_path.read_text()).config
    enforcer = asyncio.create_task(
        run_enforcer(config, admin, stop=stop, instance="e1", store_path=tmp_path / "e.db")
    )
    published: Counter[tuple[str, int]] = Counter()
    try:
        for process in aggregators.values():
            await process.wait_log("aggregator partition")
        # publish from the start of a window on; kill a replica in the middle of a later one
        await asyncio.sleep(math.ceil(time.time()) - time.time())  # align to a window
        first = math.floor(time.time())
        kill_at = first + WINDOWS_BEFORE_KILL + 0.75  # the window before closed at .5
        end = kill_at + WINDOWS_AFTER_KILL
        publisher = asyncio.create_task(publish_measurements(admin, end, published))
        await asyncio.sleep(kill_at - time.time())  # the moment of the kill (mid-window)
        aggregators[(0, "a")].kill()
        await publisher
        last = math.floor(end)
        await wait_for(
            lambda: (
                {(w.route, w.window_start) for w in judged.windows}
                >= {(route, last) for route in ROUTES}
            ),
            10,
            what="the last window of every route judged",
        )
        state = await path_state(admin, ROUTES[0])
        metrics = await scrape(ports[(0, "b")])
    finally:
        stop.set()
        await asyncio.wait_for(enforcer, 10)
        for process in aggregators.values():
            process.kill()
    for process in aggregators.values():
        assert "Traceback" not in process.log(), process.log()

    expected = {(route, start) for route in ROUTES for start in range(first, last + 1)}
    # no queue group: before the kill every replica made every window, each exact
    before = [w for w in copies if w.window_end <= math.floor(kill_at)]
    per_window = Counter((w.route, int(w.window_start)) for w in before)
    assert set(per_window.values()) == {2}, per_window
    for copy in copies:
        assert copy.lanes[0].count == published[(copy.route, int(copy.window_start))]
    # the enforcer judged each window exactly once, none missing, the kill window included
    starts = Counter((w.route, int(w.window_start)) for w in judged.windows)
    assert set(starts) == expected
    assert set(starts.values()) == {1}
    for window in judged.windows:
        assert window.lanes[0].count == published[(window.route, int(window.window_start))]
    after = [w for w in judged.windows if w.window_start > kill_at and w.route == ROUTES[0]]
    assert {w.replica for w in after} == {"b"}
    # the path state and the surviving replica's /metrics say whose window was judged
    assert state is not None and state.window_replica == "b"
    assert replica_samples(metrics)[ROUTES[0]] == "b"


async def path_state(bus: Bus, route: str) -> PathState | None:
    kv = await bus.kv(subjects.KV_PATHS)

    async def stamped() -> bool:
        try:
            entry = await kv.get(subjects.path_key(SERVICE, route))
        except Exception:
            return False
        return decode_message(entry.value or b"", PathState).window_replica == "b"

    await wait_for(stamped, 10, what=f"{route}'s path state naming replica b")
    entry = await kv.get(subjects.path_key(SERVICE, route))
    return decode_message(entry.value or b"", PathState)


def replica_samples(text: str) -> dict[str, str]:
    """route -> replica of the pathwatch_path_window_replica samples of a scrape."""
    return {
        sample.labels["route"]: sample.labels["replica"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "pathwatch_path_window_replica" and sample.value == 1.0
    }


async def scrape(port: int) -> str:
    async with httpx.AsyncClient() as client:
        for _ in range(50):
            text = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text
            if replica_samples(text).get(ROUTES[0]) == "b":
                return text
            await asyncio.sleep(0.2)  # the exporter follows KV: poll until it has caught up
    return text
