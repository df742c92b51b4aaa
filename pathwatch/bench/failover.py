"""`pathwatch bench failover`: time from a fault on path 1 to pathwatch having moved traffic,
against FRR's BFD on the same bed in the same run.

On the namespace bed (pathwatch.testbed) with every part running (see
pathwatch.bench.bedstack; UDP echo probes every `probe_interval` s with
confirm mode, consecutive-failures 3, router mode `best`; a reference
service on the same paths probes with confirm mode off), and bfdd sessions
at the same interval x multiplier (pathwatch.bench.bfd), each run waits for
a healthy bed, applies one fault inside router-1 and measures from the fault to

* (a) path 1 out of service in KV `pathwatch-paths` (as the bench's KV watch sees it),
* (b) the router's kernel route to the service changed (netlink announces it
  no longer via path 1),
* (c) client traffic flowing again: the first of 10 consecutive answered
  datagrams of a steady 100 datagram/s UDP echo stream sent after the fault,
* each BFD session's detection (its client end leaving `up`), and the
  reference service's path 1 out of service (confirm mode off, same run),

(the fault's time is when it was handed to the kernel: pathwatch.bench.faults)
and where pathwatch's time went, hop by hop (the evidence's own timestamps,
the enforcer's decision time in the PathState, the bench's arrival times).
Faults: link down, blackhole both ways, blackhole one way (client to
server), 30 % random loss. Then path 1 stays blackholed across two hold-down
expiries and must stay out of service (pathwatch.bench.failover_hold), and
5 % random loss on path 1 for a while counts the times each service's path 1
was taken out of service (false alarms, confirm mode on and off, as rates per
minute in service: pathwatch.bench.failover_alarms) and BFD's downs. Before
the faults, the echo server counts the probes of each path in a healthy
period, against the configured rate.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agents.nsexec import run_in_netns
from pathwatch.bench.bedstack import (
    PROBE_PAYLOAD,
    REFERENCE,
    ROUTES,
    SERVICE,
    Stack,
    StackOptions,
)
from pathwatch.bench.bfd import BfdBed, find_bfdd
from pathwatch.bench.failover_alarms import FalseAlarms, alarms_target, describe_alarms
from pathwatch.bench.failover_alarms import false_alarms as count_false_alarms
from pathwatch.bench.failover_hold import HoldCheck, describe_hold, hold_check, hold_target
from pathwatch.bench.faults import FaultSwitch
from pathwatch.testbed import Bed, bed
from schemas import subjects

#: the milestones are stamped by events (KV watch, netlink, stream); this only checks them
POLL_S = 0.02
MEASURE_TIMEOUT_S = 10.0
#: BFD sessions and the reference service that have not seen a fault by then did not see it.
SEE_WINDOW_S = 3.0
RECOVER_TIMEOUT_S = 30.0
FAULT_ORDER = ("link-down", "blackhole", "blackhole-oneway", "loss")
FALSE_ALARM_LOSS_PCT = 5.0
FAULT_LOSS_PCT = 30.0

PATH1 = subjects.path_key(SERVICE, ROUTES[0])
REF_PATH1 = subjects.path_key(REFERENCE, ROUTES[0])

#: Hops of pathwatch's way from the fault to traffic flowing, in order.
HOPS = (
    "probe sent",
    "loss noticed",
    "evidence published",
    "aggregator fwd",
    "evidence seen",
    "enforcer decided",
    "KV seen",
    "route changed",
    "traffic flowing",
)


@dataclass
class FaultRun:
    """Seconds from the fault to each milestone (None: not within the timeout)."""

    fault: str
    kv_down: float | None = None
    route_changed: float | None = None
    traffic_back: float | None = None
    #: the reference service's path 1 out of service (confirm mode off)
    reference_down: float | None = None
    hops: dict[str, float] = field(default_factory=dict)
    evidence: str = ""
    reprobes: int = 0
    #: BFD session name -> detection time (None: not seen within SEE_WINDOW_S)
    bfd: dict[str, float | None] = field(default_factory=dict)


@dataclass
class ProbeRate:
    """Probe packets per second per target the echo server answered in a healthy period."""

    seconds: float
    per_path: dict[str, float] = field(default_factory=dict)
    configured: float = 0.0
    reprobes: int = 0


@dataclass
class FailoverResult:
    options: StackOptions
    runs: list[FaultRun] = field(default_factory=list)
    false_alarms: FalseAlarms | None = None
    rate: ProbeRate | None = None
    hold: HoldCheck | None = None
    bfd_note: str = ""
    bfd_sessions: list[str] = field(default_factory=list)

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


async def _healthy(made: Bed, stack: Stack, bfd: BfdBed | None) -> None:
    async def check() -> bool:
        stack.check_alive()
        if bfd is not None:
            bfd.check_alive()
            if not bfd.all_up():
                return False
        for service in (SERVICE, REFERENCE) if stack.options.reference else (SERVICE,):
            state = await stack.path_state(ROUTES[0], service)
            if state is None or state.state != "up" or not state.in_service:
                return False
        return (
            await stack.kernel_gateway() == made.gateway1
            and stack.stream.flowing_since(time.monotonic() - 0.3, run=5) is not None
        )

    await _until(check, RECOVER_TIMEOUT_S, "path 1 up with traffic on it, BFD sessions up")


def _hops(stack: Stack, run: FaultRun, fault_wall: float) -> None:
    """Fill `run.hops` (seconds after the fault) from the timeline."""
    timeline = stack.timeline
    found = timeline.first_evidence(SERVICE, ROUTES[0], fault_wall)
    if found is not None:
        seen, evidence = found
        run.evidence = evidence.kind + (
            " (agent)" if evidence.reprobes or evidence.kind != "consecutive-failures" else ""
        )
        run.reprobes = evidence.reprobes
        hops = evidence.hops
        if hops is not None:
            for name, at in (
                ("probe sent", hops.probe_sent),
                ("loss noticed", hops.loss_noticed),
                ("evidence published", hops.published),
                ("aggregator fwd", hops.forwarded),
            ):
                if at is not None:
                    run.hops[name] = at - fault_wall
            if hops.forwarded is not None:
                run.evidence = f"{evidence.kind} (aggregator)"
        if evidence.kind != "consecutive-failures" and "evidence published" not in run.hops:
            run.hops["evidence published"] = evidence.ts - fault_wall
        run.hops["evidence seen"] = seen - fault_wall
    down = timeline.first_out_of_service(PATH1, fault_wall)
    if down is not None:
        seen, state = down
        run.hops["enforcer decided"] = state.updated - fault_wall
        run.hops["KV seen"] = seen - fault_wall
        if not run.evidence:
            run.evidence = "window"
    for name, value in (
        ("route changed", run.route_changed),
        ("traffic flowing", run.traffic_back),
    ):
        if value is not None:
            run.hops[name] = value


async def measure_one(
    made: Bed, stack: Stack, bfd: BfdBed | None, switch: FaultSwitch, fault: str
) -> FaultRun:
    await _healthy(made, stack, bfd)
    result = FaultRun(fault)
    timeline = stack.timeline
    fault_wall = await switch.apply(fault, FAULT_LOSS_PCT)
    fault_at = time.monotonic() - (time.time() - fault_wall)
    routes = stack.routes
    assert routes is not None
    try:
        while (elapsed := time.monotonic() - fault_at) < MEASURE_TIMEOUT_S:
            if result.kv_down is None:
                down = timeline.first_out_of_service(PATH1, fault_wall)
                if down is not None:
                    result.kv_down = down[0] - fault_wall
            if result.route_changed is None:
                left = routes.left(made.gateway1, fault_wall)
                if left is not None:
                    result.route_changed = left - fault_wall
            if result.traffic_back is None:
                flowing = stack.stream.flowing_since(fault_at)
                if flowing is not None:
                    result.traffic_back = flowing - fault_at
            if stack.options.reference and result.reference_down is None:
                down = timeline.first_out_of_service(REF_PATH1, fault_wall)
                if down is not None:
                    result.reference_down = down[0] - fault_wall
            ours = None not in (result.kv_down, result.route_changed, result.traffic_back)
            if ours and (elapsed >= SEE_WINDOW_S or _all_seen(result, stack, bfd, fault_wall)):
                break
            await asyncio.sleep(POLL_S)
    finally:
        made.clear_faults()
    if bfd is not None:
        bfd.poll()
        for session in bfd.sessions:
            at = bfd.down_after(session, fault_wall)
            seen = at is not None and at - fault_wall <= SEE_WINDOW_S
            result.bfd[session.name] = at - fault_wall if seen and at is not None else None
    _hops(stack, result, fault_wall)
    return result


def _all_seen(run: FaultRun, stack: Stack, bfd: BfdBed | None, fault_wall: float) -> bool:
    """Whether the reference service and every path-1 BFD session saw the fault already."""
    if stack.options.reference and run.reference_down is None:
        return False
    if bfd is None:
        return True
    bfd.poll()
    return all(
        bfd.down_after(session, fault_wall) is not None
        for session in bfd.sessions
        if session.route == ROUTES[0]
    )


async def measure_rate(stack: Stack, seconds: float) -> ProbeRate:
    """Probe packets per second per path answered by the echo server in a healthy period."""
    assert stack.echo is not None and stack.agent is not None
    echo, agent = stack.echo, stack.agent
    sources = {ROUTES[0]: stack.bed.client_address1, ROUTES[1]: stack.bed.client_address2}
    before = await asyncio.to_thread(echo.counts)
    reprobes_before = agent.counters["confirm_reprobes"]
    started = time.monotonic()
    await asyncio.sleep(seconds)
    after = await asyncio.to_thread(echo.counts)
    elapsed = time.monotonic() - started
    options = stack.options
    return ProbeRate(
        seconds=elapsed,
        per_path={
            route: (after[(address, PROBE_PAYLOAD)] - before[(address, PROBE_PAYLOAD)]) / elapsed
            for route, address in sources.items()
        },
        configured=1 / options.probe_interval,
        reprobes=agent.counters["confirm_reprobes"] - reprobes_before,
    )


@dataclass(frozen=True)
class BenchPlan:
    """What one `bench failover` runs."""

    runs: int
    false_alarm_seconds: float = 120.0
    rate_seconds: float = 10.0
    bfd: bool = True
    #: hold-down expiries path 1 must stay out of service across while dead (0: no check)
    hold_expiries: int = 2


async def run_failover(
    plan: BenchPlan,
    options: StackOptions,
    progress: Callable[[str], None] | None = None,
) -> FailoverResult:
    """Every fault `plan.runs` times, then the false-alarm period, on a fresh bed (root only)."""
    outcome = FailoverResult(options)
    binary = find_bfdd() if plan.bfd else None
    if not plan.bfd:
        outcome.bfd_note = "BFD baseline not run (--no-bfd)"
    elif binary is None:
        outcome.bfd_note = (
            "BFD baseline skipped: FRR's bfdd not found (install the Debian package frr)"
        )
    say = progress or (lambda _line: None)
    with bed() as made:
        bfd = BfdBed(made, binary) if binary is not None else None
        if bfd is not None:
            bfd.start()
            outcome.bfd_sessions = [s.name for s in bfd.sessions]

        async def inside() -> None:
            async with Stack(made, options) as stack:
                switch = await FaultSwitch(made).start()
                stack.on_close(switch.close)
                await _healthy(made, stack, bfd)
                if plan.rate_seconds > 0:
                    outcome.rate = await measure_rate(stack, plan.rate_seconds)
                    say(describe_rate(outcome.rate))
                for fault in FAULT_ORDER:
                    for _ in range(plan.runs):
                        run = await measure_one(made, stack, bfd, switch, fault)
                        outcome.runs.append(run)
                        say(describe_run(run))
                if plan.hold_expiries > 0:
                    await _healthy(made, stack, bfd)
                    outcome.hold = await hold_check(made, stack, switch, plan.hold_expiries)
                    say(describe_hold(outcome.hold))
                if plan.false_alarm_seconds > 0:
                    say(
                        f"{FALSE_ALARM_LOSS_PCT:g} % loss on path 1"
                        f" for {plan.false_alarm_seconds:g} s"
                    )
                    await _healthy(made, stack, bfd)
                    outcome.false_alarms = await count_false_alarms(
                        made,
                        stack,
                        bfd,
                        plan.false_alarm_seconds,
                        FALSE_ALARM_LOSS_PCT,
                        (PATH1, REF_PATH1),
                    )

        try:
            await run_in_netns(made.client, inside)
        finally:
            if bfd is not None:
                bfd.stop()
    return outcome


# --- report ------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def describe_run(run: FaultRun) -> str:
    bfd = "  ".join(f"{name} {_ms(value)}" for name, value in run.bfd.items())
    return (
        f"{run.fault:<16} kv {_ms(run.kv_down):>5} ms  route {_ms(run.route_changed):>5} ms"
        f"  traffic {_ms(run.traffic_back):>5} ms  confirm-off kv {_ms(run.reference_down):>5} ms"
        f"  [{run.evidence}, {run.reprobes} re-probes]  BFD: {bfd or '-'}"
    )


def describe_rate(rate: ProbeRate) -> str:
    paths = ", ".join(f"{route} {value:.2f}/s" for route, value in rate.per_path.items())
    return (
        f"probe rate in a healthy {rate.seconds:.0f} s: {paths} per target"
        f" (configured {rate.configured:.2f}/s); confirm re-probes in that time: {rate.reprobes}"
    )


def _p95(values: list[float]) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _row(fault: str, label: str, values: list[float | None], ratio_to: float | None) -> str:
    present = [v for v in values if v is not None]
    missed = len(values) - len(present)
    if not present:
        return f"{fault:<16} {label:<34} {len(values):>4} {'-':>7} {'-':>7} {'-':>8} {missed:>6}"
    median = statistics.median(present)
    ratio = f"{median / ratio_to:.2f}" if ratio_to else "-"
    return (
        f"{fault:<16} {label:<34} {len(values):>4} {median * 1000:>7.0f}"
        f" {_p95(present) * 1000:>7.0f} {ratio:>8} {missed:>6}"
    )


def _best_bfd(result: FailoverResult, fault: str) -> tuple[str, float] | None:
    """The BFD session on path 1 with the lowest median detection of this fault."""
    best: tuple[str, float] | None = None
    for name in result.bfd_sessions:
        if not name.endswith(ROUTES[0]):
            continue
        values = [run.bfd.get(name) for run in result.of(fault)]
        seen = [value for value in values if value is not None]
        # a session that saw the fault in at most half of the runs does not see it
        if len(seen) * 2 <= len(values):
            continue
        median = statistics.median(seen)
        if best is None or median < best[1]:
            best = (name, median)
    return best


def _fault_rows(result: FailoverResult, fault: str) -> list[str]:
    runs = result.of(fault)
    best = _best_bfd(result, fault)
    baseline = best[1] if best else None
    rows = [
        _row(fault, "(a) path down in KV", [r.kv_down for r in runs], baseline),
        _row(fault, "(b) route changed", [r.route_changed for r in runs], baseline),
        _row(fault, "(c) traffic flowing", [r.traffic_back for r in runs], baseline),
    ]
    if result.options.reference:
        rows.append(
            _row(fault, "confirm off: path down in KV", [r.reference_down for r in runs], baseline)
        )
    for name in result.bfd_sessions:
        if name.endswith(ROUTES[0]):
            rows.append(_row(fault, f"BFD {name}", [r.bfd.get(name) for r in runs], baseline))
    return rows


def _hop_rows(result: FailoverResult) -> list[str]:
    lines = [
        "where the time goes (median ms after the fault; '-': hop not on this fault's way):",
        f"{'fault':<16} " + " ".join(f"{hop:>10.10}" for hop in HOPS) + "  evidence",
    ]
    for fault in FAULT_ORDER:
        runs = result.of(fault)
        if not runs:
            continue
        cells = [_ms(_median([run.hops.get(hop) for run in runs])) for hop in HOPS]
        kinds = sorted({run.evidence for run in runs})
        lines.append(
            f"{fault:<16} " + " ".join(f"{c:>10}" for c in cells) + "  " + ", ".join(kinds)
        )
    return lines


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _targets(result: FailoverResult) -> list[str]:
    lines = ["targets:"]
    traffic = [r.traffic_back for r in result.of("blackhole") if r.traffic_back is not None]
    if traffic:
        median, p95 = statistics.median(traffic), _p95(traffic)
        best = _best_bfd(result, "blackhole")
        bfd_text = "no BFD baseline"
        ratio_ok = True
        if best is not None:
            ratio_ok = median <= 0.6 * best[1]
            bfd_text = f"{median / best[1]:.2f} x BFD {best[0]} ({best[1] * 1000:.0f} ms)"
        lines.append(
            f"  blackhole -> traffic flowing: median {median * 1000:.0f} ms (<= 150),"
            f" p95 {p95 * 1000:.0f} ms (<= 250), {bfd_text} (<= 0.6):"
            f" {_verdict(median <= 0.15 and p95 <= 0.25 and ratio_ok)}"
        )
    changed = [r.route_changed for r in result.of("link-down") if r.route_changed is not None]
    if changed:
        p95 = _p95(changed)
        lines.append(
            f"  link down -> route changed: p95 {p95 * 1000:.0f} ms (<= 50):"
            f" {_verdict(p95 <= 0.05)}"
        )
    lossy = [r.route_changed for r in result.of("loss") if r.route_changed is not None]
    if lossy:
        median = statistics.median(lossy)
        lines.append(
            f"  {FAULT_LOSS_PCT:g} % loss -> route changed:"
            f" median {median * 1000:.0f} ms (<= 1000): {_verdict(median <= 1.0)}"
        )
    if result.false_alarms is not None:
        lines.extend(alarms_target(result.false_alarms))
    if result.hold is not None:
        lines.append(hold_target(result.hold))
    rate = result.rate
    if rate is not None:
        worst = max(abs(value - rate.configured) for value in rate.per_path.values())
        lines.append(
            f"  steady probe rate unchanged (within 5 % of {rate.configured:.2f}/s per target):"
            f" {_verdict(worst <= 0.05 * rate.configured)}"
        )
    return lines


def report(result: FailoverResult) -> list[str]:
    options = result.options
    floor = options.probe_interval * options.consecutive_failures
    lines = [
        f"failover on the namespace bed: probe interval {options.probe_interval * 1000:.0f} ms,"
        f" consecutive-failures {options.consecutive_failures},"
        f" confirm-interval {options.confirm_interval * 1000:g} ms,"
        f" reply-timeout min {options.reply_timeout_min * 1000:g} ms,"
        f" hold-down {options.hold_down:g} s, router mode best",
        f"detection floor without confirm mode = interval x failures = {floor * 1000:.0f} ms",
        result.bfd_note
        or (
            f"BFD (FRR bfdd) at {options.probe_interval * 1000:.0f} ms x"
            f" {options.consecutive_failures}: single-hop to each next hop sees a dead link or"
            " next hop only; multihop to the far end of each path also sees blackholes and loss"
            f" ('missed': not seen within {SEE_WINDOW_S:g} s); x BFD = median / the fastest"
            " BFD session's median"
        ),
        f"{'fault':<16} {'milestone':<34} {'runs':>4} {'median':>7} {'p95':>7} {'x BFD':>8}"
        f" {'missed':>6}",
    ]
    for fault in FAULT_ORDER:
        if result.of(fault):
            lines.extend(_fault_rows(result, fault))
    lines.extend(_hop_rows(result))
    if result.rate is not None:
        lines.append(describe_rate(result.rate))
    if result.false_alarms is not None:
        lines.extend(describe_alarms(result.false_alarms, options.consecutive_failures))
    if result.hold is not None:
        lines.append(describe_hold(result.hold))
    lines.extend(_targets(result))
    return lines
