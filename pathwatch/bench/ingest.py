"""`pathwatch bench ingest`: measurements per second through a real nats-server into the
real aggregator, against the ceiling of receiving and decoding the same messages.

Phases, all in one run:

1. ceiling — a subscriber that only decodes each `MeasurementBatch` (msgspec);
2. aggregator — `run_aggregator` on the same stream of batches;
3. memory — RSS of an aggregator holding one window of `--memory-routes` routes
   x 4 traffic classes x 3 protocols (one batch of 100 measurements per route);
4. close — the time to close the windows of all those routes.

A publisher process (so it does not share the event loop being measured)
sends batches of 100 as fast as the consumer takes them, keeping at most
`IN_FLIGHT` batches unconsumed (the consumer reports progress on a subject),
so nats-server never cuts the consumer off as slow.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import random
import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import msgspec
from rich.progress import Progress, TaskID

from aggregator.core import Aggregator
from aggregator.service import run_aggregator
from pathwatch.bus import Bus, BusOptions
from pathwatch.embedded import EmbeddedNats
from schemas.codec import decode_message, encode
from schemas.config import PathwatchConfig
from schemas.wire import Measurement, MeasurementBatch

BATCH_SIZE = 100
IN_FLIGHT = 1000
STALL_S = 15.0
PROGRESS_SUBJECT = "bench.ingest.progress"
SERVICE = "bench"
WINDOW_S = 5.0
PROTOCOLS = ("icmp", "tcp", "udp")
CLASSES = ("high", "medium", "low", "best-effort")


def bench_config(routes: int) -> PathwatchConfig:
    """A config with `routes` routes of one service (no probes: the bench feeds the batches)."""
    raw = {
        "services": {
            SERVICE: {
                "address": ["127.0.0.1/32"],
                "service-routes": {
                    f"r{i}": {
                        "next-hop": {"node": "n1"},
                        "reachability-detection": {"detection-window": WINDOW_S},
                    }
                    for i in range(routes)
                },
            }
        }
    }
    return msgspec.convert(raw, PathwatchConfig, str_keys=True)


def realistic_items(ts: float, rng: random.Random) -> list[Measurement]:
    """100 measurements over 3 protocols x 4 classes (one probe address each), ~3 % failing."""
    items: list[Measurement] = []
    for i in range(BATCH_SIZE):
        protocol = PROTOCOLS[i % 3]
        failed = rng.random() < 0.03
        items.append(
            Measurement(
                ts=ts + i * 0.001,
                protocol=protocol,  # type: ignore[arg-type]
                traffic_class=CLASSES[(i // 3) % 4],  # type: ignore[arg-type]
                destination=f"127.0.0.{1 + i % 3}",
                probe=f"{protocol}-probe",
                outcome="timeout" if failed else "ok",
                latency_ms=None if failed else round(rng.uniform(0.05, 5.0), 3),
            )
        )
    return items


def batch_bytes(route: int, seq: int, ts: float, rng: random.Random) -> bytes:
    return encode(
        MeasurementBatch(
            agent=f"agent-{route % 10}",
            node="n1",
            seq=seq,
            sent=ts,
            service=SERVICE,
            route=f"r{route}",
            items=realistic_items(ts, rng),
        )
    )


class _Templates:
    """Encoded items per route, re-stamped every half second; headers formatted per batch."""

    def __init__(self, routes: int) -> None:
        self.routes = routes
        self.rng = random.Random(7)
        self.stamped = 0.0
        self.items: list[bytes] = []

    def refresh(self, now: float) -> None:
        if now - self.stamped < 0.5:
            return
        self.stamped = now
        self.items = []
        for route in range(self.routes):
            whole = batch_bytes(route, 0, now, self.rng)
            self.items.append(whole[whole.index(b'"items":') :])

    def message(self, index: int) -> tuple[str, bytes]:
        route = index % self.routes
        header = (
            b'{"v":1,"agent":"agent-%d","node":"n1","seq":%d,"sent":%.3f,'
            b'"service":"bench","route":"r%d",' % (route % 10, index, self.stamped, route)
        )
        return f"pw.meas.{SERVICE}.r{route}", header + self.items[route]


def _publisher(url: str, routes: int, batches: int, run_id: int) -> None:
    """Publisher process body: send `batches` batches, at most IN_FLIGHT ahead of the consumer."""

    async def main() -> None:
        bus = await Bus.connect(BusOptions.from_url(url, name="bench-publisher"))
        consumed = 0

        async def on_progress(msg: object) -> None:
            nonlocal consumed
            consumed = max(consumed, int(msg.data))  # type: ignore[attr-defined]

        await bus.nc.subscribe(f"{PROGRESS_SUBJECT}.{run_id}", cb=on_progress)
        templates = _Templates(routes)
        sent = 0
        while sent < batches:
            templates.refresh(time.time())
            while sent < batches and sent - consumed < IN_FLIGHT:
                subject, payload = templates.message(run_id * 10_000_000 + sent)
                await bus.nc.publish(subject, payload)
                sent += 1
            await asyncio.sleep(0.0005)
        await bus.nc.flush()
        await bus.close()

    asyncio.run(main())


@dataclass
class Throughput:
    measurements: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.measurements / self.seconds if self.seconds > 0 else 0.0


async def _drive(
    url: str,
    routes: int,
    batches: int,
    run_id: int,
    consumed: Callable[[], int],
    measured: Callable[[], int],
    progress: Progress,
    task: TaskID,
) -> Throughput:
    """Start the publisher, report consumption, time from first to last batch consumed."""
    reporter = await Bus.connect(BusOptions.from_url(url, name="bench-progress"))
    context = multiprocessing.get_context("spawn")
    publisher = context.Process(target=_publisher, args=(url, routes, batches, run_id))
    publisher.start()
    first: float | None = None
    last_reported = -1
    last_change = time.monotonic()
    try:
        while True:
            done = consumed()
            if done != last_reported:
                last_change = time.monotonic()
            elif time.monotonic() - last_change > STALL_S:
                raise RuntimeError(
                    f"no progress for {STALL_S:g} s at {done} of {batches} batches"
                    " (messages lost: slow consumer?)"
                )
            if done and first is None:
                first = time.perf_counter()
            if done != last_reported:
                await reporter.nc.publish(f"{PROGRESS_SUBJECT}.{run_id}", str(done).encode())
                last_reported = done
                progress.update(task, completed=done)
            if done >= batches:
                break
            if not publisher.is_alive() and publisher.exitcode not in (0, None):
                raise RuntimeError(f"publisher exited with {publisher.exitcode}")
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - (first or time.perf_counter())
        await reporter.nc.publish(f"{PROGRESS_SUBJECT}.{run_id}", str(batches).encode())
        await reporter.nc.flush()
    finally:
        await asyncio.to_thread(publisher.join, 30)
        if publisher.is_alive():
            publisher.terminate()
        await reporter.close()
    # the first batch's own measurements arrived before the clock started
    return Throughput(measured() - BATCH_SIZE, elapsed)


async def measure_ceiling(
    url: str, routes: int, batches: int, progress: Progress, task: TaskID
) -> Throughput:
    """Receive and decode only: the most any consumer on this connection could do."""
    bus = await Bus.connect(BusOptions.from_url(url, name="bench-ceiling"))
    counts = {"batches": 0, "measurements": 0}

    async def on_batch(msg: object) -> None:
        batch = decode_message(msg.data, MeasurementBatch)  # type: ignore[attr-defined]
        counts["batches"] += 1
        counts["measurements"] += len(batch.items)

    await bus.nc.subscribe(
        "pw.meas.*.*", cb=on_batch, pending_msgs_limit=1_000_000, pending_bytes_limit=1 << 30
    )
    await bus.nc.flush()
    try:
        return await _drive(
            url,
            routes,
            batches,
            1,
            lambda: counts["batches"],
            lambda: counts["measurements"],
            progress,
            task,
        )
    finally:
        await bus.close()


async def measure_aggregator(
    url: str, config: PathwatchConfig, batches: int, progress: Progress, task: TaskID
) -> tuple[Throughput, int]:
    """The real aggregator (`run_aggregator`) on the same stream; also returns windows closed."""
    bus = await Bus.connect(BusOptions.from_url(url, name="bench-aggregator"))
    await bus.ensure()
    core = Aggregator(config)
    stop = asyncio.Event()
    ready = asyncio.Event()
    closed: list[int] = [0]
    runner = asyncio.create_task(
        run_aggregator(
            config,
            bus,
            stop=stop,
            ready=ready,
            core=core,
            on_window=lambda _stats: closed.__setitem__(0, closed[0] + 1),
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 10)
        routes = len(config.routes())
        counters = core.counters
        result = await _drive(
            url,
            routes,
            batches,
            2,
            lambda: counters.messages,
            lambda: counters.measurements,
            progress,
            task,
        )
        late = counters.dropped["late"] + counters.dropped["future"]
        if late:
            raise RuntimeError(f"{late} measurements dropped as late / future during the bench")
        return result, closed[0]
    finally:
        stop.set()
        await runner
        await bus.close()


def rss_mb() -> float:
    """Resident set size of this process now, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class MemoryAndClose:
    routes: int
    lanes: int
    measurements: int
    rss_before_mb: float
    rss_after_mb: float
    close_ms: float
    windows_closed: int


def measure_memory_and_close(routes: int) -> MemoryAndClose:
    """Hold one window of every route (12 lanes each), then close them all at once.

    Runs in a fresh process (see `run_bench`) so the RSS is the aggregator's alone.
    """
    gc.collect()
    config = bench_config(routes)
    rng = random.Random(11)
    base = (time.time() // WINDOW_S) * WINDOW_S
    payloads = [batch_bytes(route, route, base + 1.0, rng) for route in range(routes)]
    gc.collect()
    rss_before = rss_mb()
    core = Aggregator(config)
    for route, payload in enumerate(payloads):
        core.handle(f"pw.meas.{SERVICE}.r{route}", payload, base + 1.5)
    del payloads
    gc.collect()
    rss_after = rss_mb()
    lanes = sum(
        len({key[:2] for window in rw.windows.values() for key in window.fine})
        for rw in core.book.routes.values()
    )
    started = time.perf_counter()
    closed = core.close_due(base + WINDOW_S + 1.0)
    close_ms = (time.perf_counter() - started) * 1000.0
    return MemoryAndClose(
        routes=routes,
        lanes=lanes,
        measurements=core.counters.measurements,
        rss_before_mb=rss_before,
        rss_after_mb=rss_after,
        close_ms=close_ms,
        windows_closed=len(closed),
    )


@dataclass
class IngestBench:
    ceiling: Throughput
    aggregator: Throughput
    windows_closed: int
    memory: MemoryAndClose
    routes: int
    batches: int


async def run_bench(
    batches: int, routes: int, memory_routes: int, progress: Progress
) -> IngestBench:
    config = bench_config(routes)
    with EmbeddedNats() as server:
        ceiling_task = progress.add_task("decode-only ceiling", total=batches)
        ceiling = await measure_ceiling(server.url, routes, batches, progress, ceiling_task)
        aggregator_task = progress.add_task("aggregator", total=batches)
        aggregator, closed = await measure_aggregator(
            server.url, config, batches, progress, aggregator_task
        )
    memory_task = progress.add_task(f"memory and close, {memory_routes} routes", total=None)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        memory = await asyncio.wrap_future(pool.submit(measure_memory_and_close, memory_routes))
    progress.update(memory_task, total=1, completed=1)
    return IngestBench(ceiling, aggregator, closed, memory, routes, batches)


def report(result: IngestBench) -> list[str]:
    ratio = (
        result.aggregator.per_second / result.ceiling.per_second
        if result.ceiling.per_second
        else 0.0
    )
    memory = result.memory
    return [
        f"batches: {result.batches} of {BATCH_SIZE} measurements over {result.routes} routes",
        f"decode-only ceiling: {result.ceiling.per_second:,.0f} measurements/s",
        f"aggregator:          {result.aggregator.per_second:,.0f} measurements/s"
        f"  (target >= 1,000,000)",
        f"ratio to ceiling:    {ratio:.2f}  (target >= 0.60)",
        f"memory: {memory.routes} routes, {memory.lanes} live (protocol, class) lanes,"
        f" {memory.measurements:,} measurements in open windows:"
        f" RSS {memory.rss_after_mb:.0f} MB of a fresh process (before the windows:"
        f" {memory.rss_before_mb:.0f} MB; target <= 300 MB)",
        f"window close: {memory.windows_closed} windows in {memory.close_ms:.0f} ms"
        f"  (target <= 100 ms)",
    ]
