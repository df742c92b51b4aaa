"""`pathwatch bench failover`: time from a fault on path 1 to pathwatch having moved traffic.

On the namespace bed (pathwatch.testbed) with every part running (see
pathwatch.bench.bedstack; UDP echo probes every `probe_interval` s,
consecutive-failures 3, router mode `best`), each run waits for a healthy
path 1, applies one fault inside router-1 and measures from the fault to

* (a) path 1 out of service in KV `pathwatch-paths`,
* (b) the client kernel's route to the service changed (`ip route get` no
  longer via path 1),
* (c) client traffic flowing again: the first of 10 consecutive answered
  datagrams of a steady 100 datagram/s UDP echo stream sent after the fault;

then clears the fault and waits for path 1 to return after hold-down. The
baseline is the configured detection floor (probe interval x consecutive
failures): what the fast path cannot beat, so the ratio shows the overhead
of everything else.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agents.nsexec import run_in_netns
from pathwatch.bench.bedstack import ROUTES, Stack, StackOptions
from pathwatch.testbed import FAULTS, Bed, bed

POLL_S = 0.002
MEASURE_TIMEOUT_S = 10.0
RECOVER_TIMEOUT_S = 30.0


@dataclass
class FaultRun:
    """Seconds from the fault to each milestone (None: not within the timeout)."""

    fault: str
    kv_down: float | None = None
    route_changed: float | None = None
    traffic_back: float | None = None


@dataclass
class FailoverResult:
    options: StackOptions
    runs: list[FaultRun] = field(default_factory=list)

    def of(self, fault: str) -> list[FaultRun]:
        return [run for run in self.runs if run.fault == fault]


async def _until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"bed not ready after {timeout:g} s: {what}")
        await asyncio.sleep(0.05)


async def _healthy(made: Bed, stack: Stack) -> None:
    async def check() -> bool:
        stack.check_alive()
        state = await stack.path_state(ROUTES[0])
        return (
            state is not None
            and state.state == "up"
            and await stack.kernel_gateway() == made.gateway1
            and stack.stream.flowing_since(time.monotonic() - 0.3, run=5) is not None
        )

    await _until(check, RECOVER_TIMEOUT_S, "path 1 up with traffic on it")


async def measure_one(made: Bed, stack: Stack, fault: str) -> FaultRun:
    await _healthy(made, stack)
    result = FaultRun(fault)
    fault_at = time.monotonic()
    made.apply_fault(fault)
    try:
        while time.monotonic() - fault_at < MEASURE_TIMEOUT_S:
            now = time.monotonic()
            if result.kv_down is None:
                state = await stack.path_state(ROUTES[0])
                if state is not None and not state.in_service:
                    result.kv_down = now - fault_at
            if result.route_changed is None and await stack.kernel_gateway() != made.gateway1:
                result.route_changed = now - fault_at
            if result.traffic_back is None:
                flowing = stack.stream.flowing_since(fault_at)
                if flowing is not None:
                    result.traffic_back = flowing - fault_at
            if None not in (result.kv_down, result.route_changed, result.traffic_back):
                break
            await asyncio.sleep(POLL_S)
    finally:
        made.clear_faults()
    return result


async def run_failover(
    runs: int,
    options: StackOptions,
    progress: Callable[[FaultRun], None] | None = None,
) -> FailoverResult:
    """`runs` runs of every fault on a fresh bed (root only)."""
    outcome = FailoverResult(options)
    with bed() as made:

        async def inside() -> None:
            async with Stack(made, options) as stack:
                for fault in FAULTS:
                    for _ in range(runs):
                        run = await measure_one(made, stack, fault)
                        outcome.runs.append(run)
                        if progress is not None:
                            progress(run)

        await run_in_netns(made.client, inside)
    return outcome


def _p95(values: list[float]) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def report(result: FailoverResult) -> list[str]:
    options = result.options
    floor = options.probe_interval * options.consecutive_failures
    lines = [
        f"failover on the namespace bed: probe interval {options.probe_interval * 1000:.0f} ms,"
        f" consecutive-failures {options.consecutive_failures}, hold-down {options.hold_down:g} s,"
        " router mode best",
        f"baseline: detection floor = interval x failures = {floor * 1000:.0f} ms",
        f"{'fault':<10} {'milestone':<22} {'runs':>4} {'median ms':>10} {'p95 ms':>8}"
        f" {'x floor':>8} {'missed':>6}",
    ]
    for fault in FAULTS:
        runs = result.of(fault)
        for label, attribute in (
            ("(a) path down in KV", "kv_down"),
            ("(b) route changed", "route_changed"),
            ("(c) traffic flowing", "traffic_back"),
        ):
            values = [v for run in runs if (v := getattr(run, attribute)) is not None]
            missed = len(runs) - len(values)
            if not values:
                lines.append(
                    f"{fault:<10} {label:<22} {len(runs):>4} {'-':>10} {'-':>8} {'-':>8}"
                    f" {missed:>6}"
                )
                continue
            median = statistics.median(values)
            lines.append(
                f"{fault:<10} {label:<22} {len(runs):>4} {median * 1000:>10.0f}"
                f" {_p95(values) * 1000:>8.0f} {median / floor:>8.2f} {missed:>6}"
            )
    targets = {"blackhole": 0.5, "link-down": 0.1}
    for fault, target in targets.items():
        values = [run.route_changed for run in result.of(fault) if run.route_changed is not None]
        if values:
            median = statistics.median(values)
            verdict = "met" if median <= target else "NOT met"
            lines.append(
                f"target {fault} -> route changed <= {target * 1000:.0f} ms median:"
                f" {median * 1000:.0f} ms ({verdict})"
            )
    return lines
