"""Benchmark of the ICMP engine against icmplib's async_multiping, in one run.

Pings 1000 loopback addresses (127.0.x.y) with `concurrency` pings in flight
(that many workers, each pinging its next address when the last answered),
first through the agent's shared-socket `IcmpEngine`, then
through icmplib's `async_multiping` with the same concurrency, and reports
for each: probes per second, median RTT, median RTT of a single quiet ping
(sequential pings to 127.0.0.1 with the same tool), the inflation (median
under load minus quiet median), and the rate ratio engine / icmplib.
Loopback only.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

from icmplib import async_multiping, async_ping

from agents.probe.icmp_engine import IcmpEngine


@dataclass(frozen=True)
class BenchFigures:
    """What one tool achieved."""

    tool: str
    pings: int
    replies: int
    seconds: float
    median_rtt_ms: float
    quiet_rtt_ms: float

    @property
    def rate(self) -> float:
        return self.pings / self.seconds if self.seconds > 0 else 0.0

    @property
    def inflation_ms(self) -> float:
        return self.median_rtt_ms - self.quiet_rtt_ms


def loopback_addresses(count: int) -> list[str]:
    """`count` distinct addresses in 127.0.0.0/16 (127.0.x.1 - 127.0.x.250)."""
    return [f"127.0.{index // 250}.{index % 250 + 1}" for index in range(count)]


async def _engine_quiet(engine: IcmpEngine, samples: int) -> float:
    rtts: list[float] = []
    for _ in range(samples):
        result = await engine.ping("127.0.0.1", timeout=1.0)
        if result.rtt_ms is not None:
            rtts.append(result.rtt_ms)
        await asyncio.sleep(0.01)
    return statistics.median(rtts)


async def bench_engine(addresses: list[str], concurrency: int, quiet_samples: int) -> BenchFigures:
    engine = IcmpEngine()
    try:
        await engine.ping("127.0.0.1", timeout=1.0)  # open the socket outside the timing
        quiet = await _engine_quiet(engine, quiet_samples)
        pending = iter(addresses)
        rtts: list[float | None] = []

        async def worker() -> None:
            for address in pending:
                rtts.append((await engine.ping(address, timeout=2.0)).rtt_ms)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        engine.close()
    replies = [rtt for rtt in rtts if rtt is not None]
    return BenchFigures(
        "pathwatch IcmpEngine",
        len(addresses),
        len(replies),
        elapsed,
        statistics.median(replies) if replies else float("nan"),
        quiet,
    )


async def bench_icmplib(addresses: list[str], concurrency: int, quiet_samples: int) -> BenchFigures:
    quiet_rtts: list[float] = []
    for _ in range(quiet_samples):
        host = await async_ping("127.0.0.1", count=1, timeout=1, privileged=True)
        if host.is_alive:
            quiet_rtts.append(host.avg_rtt)
        await asyncio.sleep(0.01)
    started = time.perf_counter()
    hosts = await async_multiping(
        addresses, count=1, timeout=2, concurrent_tasks=concurrency, privileged=True
    )
    elapsed = time.perf_counter() - started
    replies = [host.avg_rtt for host in hosts if host.is_alive]
    return BenchFigures(
        "icmplib async_multiping",
        len(addresses),
        len(replies),
        elapsed,
        statistics.median(replies) if replies else float("nan"),
        statistics.median(quiet_rtts),
    )


async def run_bench(
    count: int = 1000, concurrency: int = 50, quiet_samples: int = 20
) -> tuple[BenchFigures, BenchFigures]:
    """(engine figures, icmplib figures), measured one after the other."""
    addresses = loopback_addresses(count)
    engine = await bench_engine(addresses, concurrency, quiet_samples)
    icmplib_figures = await bench_icmplib(addresses, concurrency, quiet_samples)
    return engine, icmplib_figures


def report(engine: BenchFigures, baseline: BenchFigures, concurrency: int) -> list[str]:
    """Printable lines: each tool's figures and the ratios."""
    lines = [f"pinging {engine.pings} loopback addresses, {concurrency} in flight"]
    for figures in (engine, baseline):
        lines.append(
            f"  {figures.tool:<24} {figures.rate:10.0f} probes/s  replies {figures.replies}"
            f"/{figures.pings}  median RTT {figures.median_rtt_ms:.3f} ms  quiet"
            f" {figures.quiet_rtt_ms:.3f} ms  inflation {figures.inflation_ms:+.3f} ms"
        )
    ratio = engine.rate / baseline.rate if baseline.rate else float("inf")
    lines.append(f"  rate ratio engine / icmplib: {ratio:.1f}x (target >= 3x)")
    lines.append(
        f"  engine RTT inflation {engine.inflation_ms:+.3f} ms (target <= 0.2 ms);"
        f" icmplib {baseline.inflation_ms:+.3f} ms"
    )
    return lines
