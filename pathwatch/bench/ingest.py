"""`pathwatch bench ingest`: measurements per second through a real nats-server into the
real aggregator, against the ceiling of receiving and decoding the same messages.

Phases, all in one run:

1. ceiling — a subscriber that only decodes each `MeasurementBatch` (msgspec);
2. aggregator — `run_aggregator` on the same stream of batches;
3. memory — RSS of an aggregator holding one window of `--memory-routes` routes
   x 4 traffic classes x 3 protocols (one batch of 100 measurements per route);
4. close — the time to close the windows of all those routes at their deadline,
   after the aggregator ripened them in the lateness grace (as the service
   does), with the ripening timed on its own, and the close of the same
   windows with nothing ripened (every window got a measurement in its grace).

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
from pathwatch.runtime.bus import Bus, BusOptions
from pathwatch.runtime.embedded import EmbeddedNats
from schemas.codec import decode_message, encode
from schemas.config import PathwatchConfig
from schemas.wire import Measurement, MeasurementBatch

BATCH_SIZE = 100
IN_FLIGHT = 1000
STALL_S = 15.0
SHUTDOWN_S = 30.0
PROGRESS_SUBJECT = "bench.ingest.progress"
SERVICE = "bench"
WINDOW_S = 5.0
#: the publisher re-reads the clock this often; within it, the batches of a route
#: take successive slots of SLOT_S, their items ITEM_SPACING_S apart
STAMP_PERIOD_S = 0.5
SLOT_S = 0.01
STAMP_SLOTS = 50
ITEM_SPACING_S = SLOT_S / BATCH_SIZE
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
                protocol=protocol,
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
    """Pre-encoded batches of every route, with timestamps that move forward like an agent's.

    Each route's 100 items are encoded once into a `%`-template whose only
    slots are the 100 timestamps (the text around them is exactly what
    `encode` produces). Every half second the clock is read again and
    `STAMP_SLOTS` sets of 100 timestamps are encoded, slot k starting
    k x `SLOT_S` after that clock reading, items `ITEM_SPACING_S` apart; the
    n-th batch of a route within the half second takes slot n, so the
    batches of a route never overlap in time and each lane's series arrives
    in event-time order, as a real agent's does (re-sending the same
    timestamps would make every lane look reordered and cost the aggregator a
    sort per lane at close that no real stream causes). A message is one
    bytes formatting of its route's template plus its header: the publisher
    costs little CPU next to the consumer it feeds.
    """

    def __init__(self, routes: int) -> None:
        self.routes = routes
        rng = random.Random(7)
        self.templates: list[bytes] = []
        for route in range(routes):
            whole = batch_bytes(route, 0, 0.0, rng)
            items = whole[whole.index(b'"items":') :].replace(b"%", b"%%")
            # every item starts with its timestamp: {"ts":<t>,"protocol":...
            parts = items.split(b'{"ts":')
            rest = [part[part.index(b",") :] for part in parts[1:]]
            self.templates.append(parts[0] + b"".join(b'{"ts":%s' + tail for tail in rest))
        self.stamped = 0.0
        self.slot_stamps: list[tuple[bytes, ...]] = []
        self.next_slot = [0] * routes

    def refresh(self, now: float) -> None:
        if now - self.stamped < STAMP_PERIOD_S:
            return
        self.stamped = now
        self.slot_stamps = [
            tuple(
                msgspec.json.encode(now + slot * SLOT_S + i * ITEM_SPACING_S)
                for i in range(BATCH_SIZE)
            )
            for slot in range(STAMP_SLOTS)
        ]
        self.next_slot = [0] * self.routes

    def message(self, index: int) -> tuple[str, bytes]:
        route = index % self.routes
        slot = self.next_slot[route]
        # past the last slot (over 100 batches a second on one route) the stamps repeat
        self.next_slot[route] = min(slot + 1, STAMP_SLOTS - 1)
        header = (
            b'{"v":1,"agent":"agent-%d","node":"n1","seq":%d,"sent":%.3f,'
            b'"service":"bench","route":"r%d",' % (route % 10, index, self.stamped, route)
        )
        items = self.templates[route] % self.slot_stamps[slot]
        return f"pw.meas.{SERVICE}.r{route}", header + items


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
    #: CPU time of this (consumer) process over the same span: unlike `seconds`,
    #: not inflated by waiting for the publisher, nats-server or other load
    cpu_seconds: float = 0.0

    @property
    def cpu_us_per_measurement(self) -> float:
        return self.cpu_seconds * 1e6 / self.measurements if self.measurements > 0 else 0.0

    @property
    def per_second(self) -> float:
        return self.measurements / self.seconds if self.seconds > 0 else 0.0


def _stall_diagnosis(server: EmbeddedNats, consumer: Bus) -> str:
    """What the server and the consumer's client say about lost messages."""
    log = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
    slow = [line for line in log.splitlines() if "Slow Consumer" in line]
    stats = consumer.nc.stats
    return (
        f"consumer reconnects {stats.get('reconnects', 0)},"
        f" messages received {stats.get('in_msgs', 0)},"
        f" server slow-consumer events {len(slow)}"
        + (f" (last: {slow[-1].strip()})" if slow else "")
    )


async def _drive(
    server: EmbeddedNats,
    consumer: Bus,
    routes: int,
    batches: int,
    run_id: int,
    consumed: Callable[[], int],
    measured: Callable[[], int],
    progress: Progress,
    task: TaskID,
) -> Throughput:
    """Start the publisher, report consumption, time from first to last batch consumed."""
    url = server.url
    reporter = await Bus.connect(BusOptions.from_url(url, name="bench-progress"))
    context = multiprocessing.get_context("spawn")
    publisher = context.Process(target=_publisher, args=(url, routes, batches, run_id))
    publisher.start()
    first: float | None = None
    cpu_first = 0.0
    last_reported = -1
    last_change = time.monotonic()
    try:
        while True:
            done = consumed()
            if done != last_reported:
                last_change = time.monotonic()
            elif time.monotonic() - last_change > STALL_S:
                raise RuntimeError(
                    f"no progress for {STALL_S:g} s at {done} of {batches} batches: "
                    + _stall_diagnosis(server, consumer)
                )
            if done and first is None:
                first = time.perf_counter()
                cpu_first = time.process_time()
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
        cpu_elapsed = time.process_time() - cpu_first if first is not None else 0.0
        await reporter.nc.publish(f"{PROGRESS_SUBJECT}.{run_id}", str(batches).encode())
        await reporter.nc.flush()
    finally:
        await asyncio.to_thread(publisher.join, 30)
        if publisher.is_alive():
            publisher.terminate()
        await reporter.close()
    # the first batch's own measurements arrived before the clock started
    return Throughput(measured() - BATCH_SIZE, elapsed, cpu_elapsed)


async def measure_ceiling(
    server: EmbeddedNats, routes: int, batches: int, progress: Progress, task: TaskID
) -> Throughput:
    """Receive and decode only: the most any consumer on this connection could do."""
    bus = await Bus.connect(BusOptions.from_url(server.url, name="bench-ceiling"))
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
            server,
            bus,
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
    server: EmbeddedNats,
    config: PathwatchConfig,
    batches: int,
    progress: Progress,
    task: TaskID,
) -> tuple[Throughput, int]:
    """The real aggregator (`run_aggregator`) on the same stream; also returns windows closed."""
    bus = await Bus.connect(BusOptions.from_url(server.url, name="bench-aggregator"))
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
            server,
            bus,
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
        try:
            await asyncio.wait_for(runner, SHUTDOWN_S)
        except TimeoutError:
            raise RuntimeError(
                f"run_aggregator did not stop within {SHUTDOWN_S:g} s: "
                + _stall_diagnosis(server, bus)
            ) from None
        finally:
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
    rss_start_mb: float
    rss_after_mb: float
    #: the same windows, each with its lanes worked out ahead (the peak in the grace)
    rss_ripened_mb: float
    ingest_ms: float
    #: working out the lanes of every window in the lateness grace (ripen_due)
    ripen_ms: float
    #: closing the ripened windows at their deadline
    close_ms: float
    #: closing the same windows with nothing ripened
    cold_close_ms: float
    #: msgspec (C) encoding the closed windows into the messages published: the
    #: least any close that produces the contract's output costs here
    encode_ms: float
    encoded_bytes: int
    windows_closed: int
    lanes_reported: int


def _fill(core: Aggregator, routes: int, base: float) -> float:
    """One batch per route into the window starting at `base`; the seconds it took."""
    rng = random.Random(11)
    ingest_s = 0.0
    for route in range(routes):
        payload = batch_bytes(route, route, base + 1.0, rng)
        started = time.perf_counter()
        core.handle(f"pw.meas.{SERVICE}.r{route}", payload, base + 1.5)
        ingest_s += time.perf_counter() - started
    return ingest_s


def measure_memory_and_close(routes: int) -> MemoryAndClose:
    """Hold one window of every route (12 lanes each), ripen them, close them all at once;
    then close the same windows again, unripened, in a second aggregator.

    Runs in a fresh process (see `run_bench`) so the RSS is the aggregator's
    alone: `rss_start_mb` is the interpreter with everything imported,
    `rss_after_mb` the whole process holding the windows (the target applies
    to it) and `rss_ripened_mb` the same once they are ripened. Each batch is
    encoded just before it is ingested and dropped after, so no input is held
    while measuring. `ingest_ms` (handling the same batches) and `encode_ms`
    (encoding the closed windows, as publishing them does) are same-run
    baselines of the close time.
    """
    gc.collect()
    rss_start = rss_mb()
    config = bench_config(routes)
    base = (time.time() // WINDOW_S) * WINDOW_S
    core = Aggregator(config)
    ingest_s = _fill(core, routes, base)
    gc.collect()
    rss_after = rss_mb()
    lanes = sum(
        len({key[:2] for window in rw.windows.values() for key in window.fine})
        for rw in core.book.routes.values()
    )
    measurements = core.counters.measurements
    started = time.perf_counter()
    core.ripen_due(base + WINDOW_S)
    ripen_ms = (time.perf_counter() - started) * 1000.0
    gc.collect()
    rss_ripened = rss_mb()
    started = time.perf_counter()
    closed = core.close_due(base + WINDOW_S + 1.0)
    close_ms = (time.perf_counter() - started) * 1000.0
    started = time.perf_counter()
    payloads = [encode(stats) for stats in closed]
    encode_ms = (time.perf_counter() - started) * 1000.0
    windows_closed = len(closed)
    lanes_reported = sum(len(stats.lanes) for stats in closed)
    encoded_bytes = sum(map(len, payloads))
    del core, closed, payloads
    gc.collect()
    cold = Aggregator(config)
    _fill(cold, routes, base)
    started = time.perf_counter()
    cold_closed = cold.close_due(base + WINDOW_S + 1.0)
    cold_close_ms = (time.perf_counter() - started) * 1000.0
    if len(cold_closed) != windows_closed:
        raise RuntimeError("the unripened close reported another number of windows")
    return MemoryAndClose(
        routes=routes,
        lanes=lanes,
        measurements=measurements,
        rss_start_mb=rss_start,
        rss_after_mb=rss_after,
        rss_ripened_mb=rss_ripened,
        ingest_ms=ingest_s * 1000.0,
        ripen_ms=ripen_ms,
        close_ms=close_ms,
        cold_close_ms=cold_close_ms,
        encode_ms=encode_ms,
        encoded_bytes=encoded_bytes,
        windows_closed=windows_closed,
        lanes_reported=lanes_reported,
    )


def measure_core(routes: int, batches: int) -> Throughput:
    """`Aggregator.handle` on the same messages in a loop, no NATS: what the
    aggregator costs per measurement once the network client is out of the way."""
    templates = _Templates(routes)
    now = time.time()
    templates.refresh(now)
    core = Aggregator(bench_config(routes))
    started = time.perf_counter()
    for index in range(batches):
        # formatting the header (a few us) is timed too: under 2 % of a batch
        subject, payload = templates.message(index)
        core.handle(subject, payload, now)
    elapsed = time.perf_counter() - started
    return Throughput(core.counters.measurements, elapsed, elapsed)


@dataclass
class IngestBench:
    ceiling: Throughput
    aggregator: Throughput
    core: Throughput
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
        ceiling = await measure_ceiling(server, routes, batches, progress, ceiling_task)
        aggregator_task = progress.add_task("aggregator", total=batches)
        aggregator, closed = await measure_aggregator(
            server, config, batches, progress, aggregator_task
        )
    spawn = multiprocessing.get_context("spawn")
    core_task = progress.add_task("aggregator core without NATS", total=None)
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        core = await asyncio.wrap_future(pool.submit(measure_core, routes, batches))
    progress.update(core_task, total=1, completed=1)
    memory_task = progress.add_task(f"memory and close, {memory_routes} routes", total=None)
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        memory = await asyncio.wrap_future(pool.submit(measure_memory_and_close, memory_routes))
    progress.update(memory_task, total=1, completed=1)
    return IngestBench(ceiling, aggregator, core, closed, memory, routes, batches)


TARGET_RATE = 1_000_000.0
TARGET_RATIO = 0.60
TARGET_RSS_MB = 300.0
TARGET_CLOSE_MS = 100.0


def _ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline else 0.0


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def report(result: IngestBench) -> list[str]:
    """Every figure with its target and its ratio to the same-run baseline."""
    ceiling = result.ceiling.per_second
    rate = result.aggregator.per_second
    ratio = rate / ceiling if ceiling else 0.0
    core = result.core.per_second
    ceiling_cpu = result.ceiling.cpu_us_per_measurement
    aggregator_cpu = result.aggregator.cpu_us_per_measurement
    memory = result.memory
    close_per_route_us = memory.close_ms * 1000.0 / max(1, memory.windows_closed)
    peak_mb = max(memory.rss_after_mb, memory.rss_ripened_mb)
    return [
        f"batches: {result.batches} of {BATCH_SIZE} measurements over {result.routes} routes"
        f" per phase; {result.windows_closed} windows closed during the aggregator phase",
        f"decode-only ceiling (baseline): {ceiling:,.0f} measurements/s",
        f"aggregator:          {rate:,.0f} measurements/s = {ratio:.2f} of the ceiling"
        f"  (target >= {TARGET_RATE:,.0f}: {_verdict(rate >= TARGET_RATE)};"
        f" ratio target >= {TARGET_RATIO:.2f}: {_verdict(ratio >= TARGET_RATIO)})",
        f"aggregator core without NATS: {core:,.0f} measurements/s"
        f" = {core / ceiling if ceiling else 0.0:.2f} of the ceiling (diagnostic, no target)",
        f"consumer CPU per measurement (diagnostic: the ceiling phase waits on the publisher"
        f" and nats-server, so its rate moves with the machine's load; CPU time does not):"
        f" ceiling {ceiling_cpu:.2f} us, aggregator {aggregator_cpu:.2f} us"
        f" = {ceiling_cpu / aggregator_cpu if aggregator_cpu else 0.0:.2f} of the ceiling's rate"
        f" at equal CPU",
        f"memory: {memory.routes} routes, {memory.lanes} live (protocol, class) lanes,"
        f" {memory.measurements:,} measurements in open windows: RSS {memory.rss_after_mb:.0f} MB"
        f" = {memory.rss_after_mb / memory.rss_start_mb:.2f} x the fresh process with"
        f" everything imported ({memory.rss_start_mb:.0f} MB); {memory.rss_ripened_mb:.0f} MB"
        f" once every window is ripened"
        f"  (target <= {TARGET_RSS_MB:.0f} MB: {_verdict(peak_mb <= TARGET_RSS_MB)})",
        f"window close at the deadline: {memory.windows_closed} windows"
        f" ({memory.lanes_reported:,} lanes reported) in {memory.close_ms:.0f} ms,"
        f" {close_per_route_us:.1f} us per route"
        f"  (target <= {TARGET_CLOSE_MS:.0f} ms: {_verdict(memory.close_ms <= TARGET_CLOSE_MS)})",
        f"  ripening those windows in their lateness grace, before the deadline:"
        f" {memory.ripen_ms:.0f} ms = {_ratio(memory.ripen_ms, memory.ingest_ms):.2f}"
        f" x the time to ingest them ({memory.ingest_ms:.0f} ms)",
        f"  closing the same windows unripened (a measurement in every window's grace):"
        f" {memory.cold_close_ms:.0f} ms = {_ratio(memory.cold_close_ms, memory.close_ms):.1f}"
        f" x the ripened close",
        f"encoding the closed windows for publishing (msgspec, in C; every close pays it):"
        f" {memory.encode_ms:.0f} ms for {memory.encoded_bytes / 1e6:.1f} MB;"
        f" unripened close = {_ratio(memory.cold_close_ms, memory.encode_ms):.2f} x that",
    ]
