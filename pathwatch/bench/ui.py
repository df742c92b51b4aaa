"""Benchmark of the status page (`pathwatch bench ui`), in one run.

Sets up a real nats-server, 1,000 routes (50 services x 20) with a PathState
each in KV (four lanes with figures, a probe), 100 alarms on the alarm stream,
and 24 h of history in SQLite per route (5-minute rollups of two lanes, plus
the last hour's raw 5-s windows), then serves the API in this process and
measures, over loopback HTTP (the time to the last byte as the client sees it):

* the overview `/` against its baseline, the JSON of the same routes
  (`/api/v1/service-paths`);
* a route page with 24 h of charts (`/routes/S/R?span=24h`) against the JSON
  of the same history (`/api/v1/history/S/R?span=24h`);
* the delay from a KV put of a route's PathState to the changed row reaching
  an event-stream client (`/events/overview`, read by httpx) and, when
  chromium is there, a headless browser showing the overview (the time its
  page script has put the new row in the page); baseline: a NATS KV watcher
  of the same bucket seeing the same put.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec

from aggregator.history import HistoryStore, rows_of
from enforcer.api import run_api
from pathwatch.runtime.bus import Bus, BusOptions
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.embedded import EmbeddedNats, free_port
from schemas import subjects
from schemas.codec import encode
from schemas.config import PathwatchConfig
from schemas.history import FIVE_MINUTES
from schemas.wire import Alarm, LaneState, LaneStats, PathState, ProbeStatus, WindowStats

SERVICES, ROUTES_PER_SERVICE = 50, 20
DAY, HOUR, RAW_STEP = 86400, 3600, 5
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]


@dataclass
class Timings:
    """Seconds per sample of one measurement."""

    name: str
    samples: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples) * 1000 if self.samples else float("nan")

    @property
    def p90_ms(self) -> float:
        if not self.samples:
            return float("nan")
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))] * 1000


@dataclass
class UiFigures:
    overview: Timings
    overview_json: Timings
    route: Timings
    route_json: Timings
    to_sse: Timings
    to_browser: Timings | None
    kv_watch: Timings
    history_rows: int
    page_bytes: dict[str, int]


def route_names() -> list[tuple[str, str]]:
    return [
        (f"svc{s:02d}", f"r{r:02d}") for s in range(SERVICES) for r in range(ROUTES_PER_SERVICE)
    ]


def bench_config(nats_url: str, store: Path) -> PathwatchConfig:
    services = "\n".join(
        f"  svc{s:02d}:\n    service-routes:\n"
        + "".join(
            f"      r{r:02d}: {{next-hop: {{node: n1, interface: lo}},"
            " reachability-detection: {reachability-profile: p}}\n"
            for r in range(ROUTES_PER_SERVICE)
        )
        for s in range(SERVICES)
    )
    text = (
        f'nats: {{url: "{nats_url}"}}\napi: {{listen: "127.0.0.1:{free_port()}"}}\n'
        f'store: {{path: "{store}"}}\n'
        "reachability-profiles:\n  p:\n    tcp:\n"
        "      best-effort: {acceptable-error-threshold: 25}\n"
        f"services:\n{services}"
    )
    return parse_config(text, "bench-ui.yaml").config


def _lane(protocol: str, rng: random.Random, probe: str = "", destination: str = "") -> LaneStats:
    latency = rng.uniform(0.2, 5.0)
    return LaneStats(
        protocol=protocol,
        traffic_class="best-effort",
        probe=probe,
        destination=destination,
        count=20,
        errors=0,
        outcomes={"ok": 20},
        latency_min_ms=latency / 2,
        latency_max_ms=latency * 3,
        latency_mean_ms=latency,
        latency_median_ms=latency,
        latency_p90_ms=latency * 2,
        jitter_ms=latency / 5,
        mos=4.4,
    )


def path_state(service: str, route: str, now: float, rng: random.Random) -> PathState:
    lanes = [
        _lane("tcp", rng),
        _lane("tcp", rng, "svc", "127.0.0.1"),
        _lane("icmp", rng),
        _lane("icmp", rng, "ping", "127.0.0.1"),
    ]
    return PathState(
        service=service,
        route=route,
        node="n1",
        interface="lo",
        state="up",
        meets_sla=True,
        reason="meets SLA",
        since=now - rng.uniform(60, DAY),
        updated=now,
        quality=rng.uniform(90, 100),
        cost=10,
        lanes=[
            LaneState(
                protocol=lane.protocol,
                traffic_class=lane.traffic_class,
                probe=lane.probe,
                destination=lane.destination,
                state="up",
                meets_sla=True,
                metrics=lane,
            )
            for lane in lanes
        ],
        probes=[ProbeStatus(name="svc", kind="tcp", state="up", counters={"success": 100})],
    )


def _history_rows(service: str, route: str, now: float, rng: random.Random) -> list[Any]:
    """Two lanes: 5-minute rollups over 24 h, then raw 5-s windows over the last hour.

    Rows are the layout `rows_of` writes, varied in time and latency only.
    """
    template = rows_of(
        WindowStats(
            service=service,
            route=route,
            window_start=0.0,
            window_end=1.0,
            lanes=[_lane("tcp", rng), _lane("icmp", rng)],
        )
    )
    rows: list[Any] = []
    for start, end, step, resolution in (
        (now - DAY, now - HOUR, FIVE_MINUTES, FIVE_MINUTES),
        (now - HOUR, now, RAW_STEP, 0),
    ):
        for t in range(int(start), int(end), step):
            for lane in template:
                mean = rng.uniform(0.2, 5.0)
                figures = (mean / 2, mean * 3, mean, mean, mean * 2, mean / 5, 4.4)
                rows.append((resolution, *lane[1:8], float(t), float(t + step), *lane[10:14]))
                rows[-1] += figures
    return rows


async def fill_history(store: Path, now: float) -> int:
    history = await HistoryStore(store, batch_rows=50_000).open()
    rng = random.Random(7)
    try:
        await history.db.execute("PRAGMA synchronous=OFF")
        for service, route in route_names():
            history._pending.extend(_history_rows(service, route, now, rng))
            if history.pending() > 200_000:
                await history.flush()
        await history.flush()
        return history.rows_written
    finally:
        await history.close()


async def fill_bus(bus: Bus, now: float) -> None:
    kv = await bus.kv(subjects.KV_PATHS)
    rng = random.Random(3)
    for service, route in route_names():
        await kv.put(
            subjects.path_key(service, route), encode(path_state(service, route, now, rng))
        )
    for i, (service, route) in enumerate(route_names()[::10]):
        alarm = Alarm(
            id=f"bench-{i}",
            status="raised",
            service=service,
            route=route,
            protocol="tcp",
            traffic_class="best-effort",
            cause="reachability",
            reason="tcp/best-effort error 40 % > 25 %",
            raised_at=now - 600,
        )
        await bus.js.publish(subjects.alarm(service, route), encode(alarm))


async def time_get(client: httpx.AsyncClient, path: str, runs: int, name: str) -> Timings:
    """`runs` timed GETs after two untimed ones (templates compiled, caches warm)."""
    timings = Timings(name)
    for _ in range(2):
        (await client.get(path)).raise_for_status()
    for _ in range(runs):
        started = time.perf_counter()
        reply = await client.get(path)
        timings.samples.append(time.perf_counter() - started)
        reply.raise_for_status()
    return timings


Probe = Callable[[str], Awaitable[float]]


async def change_delays(bus: Bus, samples: int, receivers: dict[str, Probe]) -> dict[str, Timings]:
    """Put `samples` changes of route svc00.r00; each receiver returns when it saw marker i."""
    kv = await bus.kv(subjects.KV_PATHS)
    found = {name: Timings(name) for name in receivers}
    base = path_state("svc00", "r00", time.time(), random.Random(1))
    for i in range(samples):
        marker = f"bench-change-{i}"
        waits = {name: asyncio.ensure_future(wait(marker)) for name, wait in receivers.items()}
        await asyncio.sleep(0.05)
        sent = time.time()
        state = msgspec.structs.replace(base, reason=marker, updated=sent)
        await kv.put(subjects.path_key("svc00", "r00"), encode(state))
        for name, waiting in waits.items():
            found[name].samples.append(await asyncio.wait_for(waiting, 10) - sent)
        await asyncio.sleep(0.1)
    return found


@contextlib.asynccontextmanager
async def sse_reader(base: str) -> AsyncIterator[Probe]:
    seen: dict[str, float] = {}
    arrived = asyncio.Event()

    async def read() -> None:
        async with (
            httpx.AsyncClient(timeout=None) as client,
            client.stream("GET", f"{base}/events/overview") as stream,
        ):
            async for line in stream.aiter_lines():
                if line.startswith("data: ") and "bench-change-" in line:
                    at = time.time()
                    marker = line.split("bench-change-", 1)[1].split("<", 1)[0]
                    seen[f"bench-change-{marker}"] = at
                    arrived.set()

    task = asyncio.create_task(read())

    async def wait(marker: str) -> float:
        while marker not in seen:
            arrived.clear()
            await arrived.wait()
        return seen[marker]

    try:
        yield wait
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def kv_watcher(bus: Bus) -> AsyncIterator[Probe]:
    kv = await bus.kv(subjects.KV_PATHS)
    watcher = await kv.watch(subjects.path_key("svc00", "r00"), include_history=False)
    seen: dict[str, float] = {}
    arrived = asyncio.Event()

    async def follow() -> None:
        async for entry in watcher:
            if entry is not None and entry.value and b"bench-change-" in entry.value:
                at = time.time()
                marker = entry.value.split(b"bench-change-", 1)[1].split(b'"', 1)[0]
                seen[f"bench-change-{marker.decode()}"] = at
                arrived.set()

    task = asyncio.create_task(follow())

    async def wait(marker: str) -> float:
        while marker not in seen:
            arrived.clear()
            await arrived.wait()
        return seen[marker]

    try:
        yield wait
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await watcher.stop()  # type: ignore[no-untyped-call]


@contextlib.asynccontextmanager
async def browser_page(base: str) -> AsyncIterator[Probe | None]:
    """A headless chromium on the overview; None when chromium or Playwright is missing."""
    chromium = shutil.which("chromium")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        yield None
        return
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = await browser.new_page()
        await page.goto(f"{base}/")
        await page.wait_for_function("document.getElementById('live').textContent === 'live'")

        async def wait(marker: str) -> float:
            await page.wait_for_function(
                "(m) => document.getElementById('path-svc00.r00').textContent.includes(m)",
                arg=marker,
                polling=5,
            )
            at: float = await page.evaluate("window.pwLive.lastEventAt")
            return at / 1000

        try:
            yield wait
        finally:
            await browser.close()


async def run_bench(runs: int, samples: int, progress: Callable[[str], None]) -> UiFigures:
    with tempfile.TemporaryDirectory(prefix="pathwatch-bench-ui-") as tmp:
        store, now = Path(tmp) / "pw.db", time.time()
        progress("writing 24 h of history for 1,000 routes")
        history_rows = await fill_history(store, now)
        server = EmbeddedNats(store_dir=Path(tmp) / "nats")
        await asyncio.to_thread(server.start)
        bus = await Bus.connect(BusOptions.from_url(server.url, name="bench-ui"))
        stop = asyncio.Event()
        try:
            await bus.ensure()
            progress("putting 1,000 path states and 100 alarms on NATS")
            await fill_bus(bus, now)
            config = bench_config(server.url, store)
            api = asyncio.create_task(run_api(config, bus, stop=stop))
            base = f"http://{config.api.listen}"
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        health = (await client.get("/healthz")).json()
                        if health["paths"] >= len(route_names()) and health["alarms"] >= 100:
                            break
                    if api.done():
                        api.result()
                    await asyncio.sleep(0.1)
                progress("timing pages and their JSON")
                route = "/routes/svc07/r13?span=24h"
                pages = {
                    "overview": await time_get(client, "/", runs, "overview"),
                    "overview_json": await time_get(
                        client, "/api/v1/service-paths", runs, "service-paths JSON"
                    ),
                    "route": await time_get(client, route, runs, "route page 24 h"),
                    "route_json": await time_get(
                        client, "/api/v1/history/svc07/r13?span=24h", runs, "history JSON 24 h"
                    ),
                }
                sizes = {
                    "overview": len((await client.get("/")).content),
                    "route": len((await client.get(route)).content),
                }
            progress("timing KV change -> event stream -> browser")
            async with (
                sse_reader(base) as sse,
                kv_watcher(bus) as watch,
                browser_page(base) as browser,
            ):
                receivers: dict[str, Probe] = {"sse": sse, "kv": watch}
                if browser is not None:
                    receivers["browser"] = browser
                delays = await change_delays(bus, samples, receivers)
            return UiFigures(
                overview=pages["overview"],
                overview_json=pages["overview_json"],
                route=pages["route"],
                route_json=pages["route_json"],
                to_sse=delays["sse"],
                to_browser=delays.get("browser"),
                kv_watch=delays["kv"],
                history_rows=history_rows,
                page_bytes=sizes,
            )
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(api, 5)
            await bus.close()
            await asyncio.to_thread(server.stop)


def _line(timings: Timings, target_ms: float | None = None, base: Timings | None = None) -> str:
    text = f"{timings.name:<28} median {timings.median_ms:8.1f} ms  p90 {timings.p90_ms:8.1f} ms"
    if base is not None:
        text += f"  ({timings.median_ms / base.median_ms:.1f}x {base.name})"
    if target_ms is not None:
        met = "met" if timings.p90_ms <= target_ms else "NOT met"
        text += f"  target <= {target_ms:g} ms: {met}"
    return text


def report(figures: UiFigures) -> list[str]:
    lines = [
        f"1,000 routes, 100 alarms, {figures.history_rows:,} history rows (24 h);"
        f" overview {figures.page_bytes['overview']:,} B,"
        f" route page {figures.page_bytes['route']:,} B",
        _line(figures.overview, 100, figures.overview_json),
        _line(figures.overview_json),
        _line(figures.route, 200, figures.route_json),
        _line(figures.route_json),
        _line(figures.kv_watch),
        _line(figures.to_sse, 1000, figures.kv_watch),
    ]
    if figures.to_browser is not None:
        lines.append(_line(figures.to_browser, 1000, figures.kv_watch))
    else:
        lines.append("browser: skipped (no chromium or Playwright); event-stream client only")
    return lines
