"""The failover bench's false-alarm period: light random loss on path 1, and how often each
service took path 1 out of service for it (confirm mode on and off, same run).

The loss rule: router-1's FORWARD chain drops each forwarded packet independently with
probability `loss_pct` (`iptables -m statistic --mode random`), in both directions, so
one probe exchange (request and reply) is lost with q = 1 - (1 - p)^2. Both services
probe the same path at the same rate and judge the same windows; they differ only in how
the fast path counts failures (the agent's confirm re-probes, or the aggregator's three
scheduled probes in a row). A take-down ends a service's exposure until path 1 is back
in service, so the counts are compared as rates per minute *in service*, each with an
exact Poisson 95 % interval, and split by cause (fast path, window). What independent
losses would give is printed beside them: windows, P(more than 25 % of the window's
probes lost) per window; fast path, q^3 per probe that starts a run. The agent counts
suspicion runs and confirmed runs (independent losses confirm a run with chance
q^(failures - 1)) and the confirmed runs that a late reply refuted afterwards (the far
end was slow, not lossy): with independent losses there are none.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from pathwatch.bench.bedstack import Stack
from pathwatch.bench.bfd import BfdBed
from pathwatch.testbed import Bed
from schemas import subjects
from schemas.codec import DecodeError, decode_message
from schemas.wire import PathState, WindowStats

#: Two-sided confidence of the printed intervals.
CONFIDENCE = 0.95
#: The bed's reachability profile takes a path down above this error percentage.
WINDOW_ERROR_LIMIT_PCT = 25.0
AGENT_COUNTERS = ("confirm_runs", "confirm_evidence", "confirm_refuted", "confirm_reprobes")


@dataclass
class WindowTally:
    """The windows of one service's path 1 the aggregator closed in the period (its
    aggregate lanes: no destination), and the probes and losses in them."""

    windows: int = 0
    probes: int = 0
    errors: int = 0
    over_limit: int = 0

    def add(self, stats: WindowStats) -> None:
        lanes = [lane for lane in stats.lanes if not lane.destination] or stats.lanes
        self.windows += 1
        self.probes += sum(lane.count for lane in lanes)
        self.errors += sum(lane.errors for lane in lanes)
        if any(lane.error_pct > WINDOW_ERROR_LIMIT_PCT for lane in lanes):
            self.over_limit += 1

    def describe(self) -> str:
        lost = self.errors / self.probes * 100 if self.probes else 0.0
        return (
            f"{self.windows} windows, {self.errors} of {self.probes} probes lost ({lost:.2f} %),"
            f" {self.over_limit} windows over {WINDOW_ERROR_LIMIT_PCT:g} %"
        )


@dataclass
class ServiceAlarms:
    """One service's path-1 take-downs in the period."""

    reasons: list[str] = field(default_factory=list)
    in_service_s: float = 0.0
    windows: WindowTally = field(default_factory=WindowTally)

    @property
    def count(self) -> int:
        return len(self.reasons)

    @property
    def fast(self) -> int:
        return sum("consecutive failures" in reason for reason in self.reasons)

    @property
    def window(self) -> int:
        return self.count - self.fast


@dataclass
class FalseAlarms:
    """Times path 1 was taken out of service under light random loss."""

    seconds: float
    loss_pct: float
    probe_interval: float
    detection_window: float
    confirm_on: ServiceAlarms = field(default_factory=ServiceAlarms)
    confirm_off: ServiceAlarms = field(default_factory=ServiceAlarms)
    #: the agent's confirm-mode counters over the period (all its targets; path 2 is healthy)
    agent: dict[str, int] = field(default_factory=dict)
    bfd: dict[str, int] = field(default_factory=dict)

    @property
    def exchange_loss(self) -> float:
        """q: a probe exchange is lost when its request or its reply is."""
        return 1 - (1 - self.loss_pct / 100) ** 2


def in_service_seconds(
    states: list[tuple[float, PathState]], start: float, end: float, was_in: bool = True
) -> float:
    """Seconds of [start, end] the path was in service, from its states (by decision time)."""
    total, since = 0.0, start if was_in else None
    for _, state in states:
        at = min(max(state.updated, start), end)
        if state.in_service and since is None:
            since = at
        elif not state.in_service and since is not None:
            total += at - since
            since = None
    if since is not None:
        total += end - since
    return total


async def false_alarms(
    made: Bed,
    stack: Stack,
    bfd: BfdBed | None,
    seconds: float,
    loss_pct: float,
    keys: tuple[str, str],
) -> FalseAlarms:
    """Path-1 take-downs of both services (`keys`: confirm on, off) under light random loss;
    the bed must be healthy."""
    options = stack.options
    result = FalseAlarms(seconds, loss_pct, options.probe_interval, options.detection_window)
    agent = stack.agent
    before = {name: agent.counters[name] for name in AGENT_COUNTERS} if agent else {}
    start = time.time()
    subscriptions = await _tally_windows(stack, keys, (result.confirm_on, result.confirm_off))
    made.apply_fault("loss", loss_pct=loss_pct)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            stack.check_alive()
            await asyncio.sleep(0.5)
    finally:
        made.clear_faults()
        for subscription in subscriptions:
            await subscription.unsubscribe()
    end = time.time()
    for key, alarms in zip(keys, (result.confirm_on, result.confirm_off), strict=True):
        alarms.reasons = stack.timeline.take_downs(key, start, end)
        alarms.in_service_s = in_service_seconds(stack.timeline.paths.get(key, []), start, end)
    if agent is not None:
        result.agent = {name: agent.counters[name] - before[name] for name in AGENT_COUNTERS}
    if bfd is not None:
        bfd.poll()
        result.bfd = {s.name: bfd.downs_between(s, start, end) for s in bfd.sessions}
    return result


async def _tally_windows(
    stack: Stack, keys: tuple[str, str], services: tuple[ServiceAlarms, ServiceAlarms]
) -> list[Subscription]:
    """Count the windows of each key's route as the aggregator publishes them."""
    assert stack.bus is not None
    subscriptions = []
    for key, service in zip(keys, services, strict=True):

        async def on_stats(msg: Msg, tally: WindowTally = service.windows) -> None:
            with contextlib.suppress(DecodeError):
                tally.add(decode_message(msg.data, WindowStats))

        subject = subjects.stats(*subjects.split_path_key(key))
        subscriptions.append(await stack.bus.nc.subscribe(subject, cb=on_stats))
    return subscriptions


# --- statistics ----------------------------------------------------------------------


def poisson_cdf(k: int, mean: float) -> float:
    """P(X <= k) for X ~ Poisson(mean)."""
    if k < 0:
        return 0.0
    term = total = math.exp(-mean)
    for i in range(1, k + 1):
        term *= mean / i
        total += term
    return min(total, 1.0)


def _solve(target: float, k: int, low: float, high: float) -> float:
    """The mean at which P(X <= k) = target (it falls as the mean grows), by bisection."""
    for _ in range(100):
        middle = (low + high) / 2
        if poisson_cdf(k, middle) > target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def poisson_interval(count: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact (Garwood) two-sided interval of a Poisson mean from one count."""
    tail = (1 - confidence) / 2
    high_bound = 10.0 + 5 * count
    lower = 0.0 if count == 0 else _solve(1 - tail, count - 1, 0.0, high_bound)
    upper = _solve(tail, count, 0.0, high_bound)
    return lower, upper


def binomial_tail(at_least: int, trials: int, chance: float) -> float:
    """P(X >= at_least) for X ~ Binomial(trials, chance)."""
    return sum(
        math.comb(trials, i) * chance**i * (1 - chance) ** (trials - i)
        for i in range(max(at_least, 0), trials + 1)
    )


def higher_by_chance(on: ServiceAlarms, off: ServiceAlarms) -> float:
    """One-sided p-value of confirm-on having at least its count if both rates were equal
    (given the total, confirm-on's share is binomial with its share of the exposure)."""
    exposure = on.in_service_s + off.in_service_s
    if exposure <= 0 or on.count + off.count == 0:
        return 1.0
    return binomial_tail(on.count, on.count + off.count, on.in_service_s / exposure)


def expected_window_downs(alarms: FalseAlarms, in_service_s: float) -> float:
    """Windows taken down by independent losses alone in that much time in service."""
    probes = max(round(alarms.detection_window / alarms.probe_interval), 1)
    limit = math.floor(probes * WINDOW_ERROR_LIMIT_PCT / 100) + 1  # lost probes above the limit
    per_window = binomial_tail(limit, probes, alarms.exchange_loss)
    return in_service_s / alarms.detection_window * per_window


def expected_fast_downs(alarms: FalseAlarms, in_service_s: float, failures: int = 3) -> float:
    """Fast-path take-downs by independent losses alone: each probe that follows an
    answered one starts a run of `failures` losses with chance (1 - q) q^failures."""
    q = alarms.exchange_loss
    return in_service_s / alarms.probe_interval * (1 - q) * q**failures


# --- report -----------------------------------------------------------------------------


def _rate(alarms: ServiceAlarms, count: int) -> str:
    minutes = alarms.in_service_s / 60
    if minutes <= 0:
        return "-"
    low, high = poisson_interval(count)
    return f"{count / minutes:.2f}/min [{low / minutes:.2f}, {high / minutes:.2f}]"


def describe_alarms(alarms: FalseAlarms, failures: int = 3) -> list[str]:
    q = alarms.exchange_loss
    lines = [
        f"false alarms: {alarms.loss_pct:g} % random loss on path 1 for {alarms.seconds:g} s"
        f" (iptables statistic random in router-1's FORWARD, each packet independently, both"
        f" directions: {q * 100:.2f} % of probe exchanges lost); rates per minute in service,"
        f" {CONFIDENCE * 100:g} % Poisson interval; expected = what independent losses give",
    ]
    for label, service in (("confirm on ", alarms.confirm_on), ("confirm off", alarms.confirm_off)):
        exposure = service.in_service_s
        fast = expected_fast_downs(alarms, exposure, failures)
        window = expected_window_downs(alarms, exposure)
        lines.append(
            f"  {label}: {service.count} take-downs in {exposure:.0f} s in service,"
            f" {_rate(service, service.count)};"
            f" fast path {service.fast} (expected {fast:.1f}),"
            f" windows {service.window} (expected {window:.1f})"
        )
        lines.append(f"    {label} windows closed: {service.windows.describe()}")
    agent = alarms.agent
    if agent:
        lines.append(
            f"  agent: {agent.get('confirm_runs', 0)} suspicion runs,"
            f" {agent.get('confirm_reprobes', 0)} re-probes,"
            f" {agent.get('confirm_evidence', 0)} confirmed (expected"
            f" {agent.get('confirm_runs', 0) * q ** (failures - 1):.1f} = runs x q^{failures - 1}),"
            f" {agent.get('confirm_refuted', 0)} confirmed runs refuted by a late reply"
        )
    bfd = ", ".join(f"{name} {count}" for name, count in alarms.bfd.items()) or "not run"
    lines.append(f"  BFD downs in the same period: {bfd}")
    return lines


def alarms_target(alarms: FalseAlarms) -> list[str]:
    on, off = alarms.confirm_on, alarms.confirm_off
    per_minute = [
        service.count / (service.in_service_s / 60) if service.in_service_s > 0 else math.inf
        for service in (on, off)
    ]
    chance = higher_by_chance(on, off)
    return [
        f"  false downs under {alarms.loss_pct:g} % loss, confirm on no higher than off"
        f" ({alarms.seconds:g} s): counts {on.count} vs {off.count}:"
        f" {'met' if on.count <= off.count else 'NOT met'};"
        f" per minute in service {per_minute[0]:.2f} vs {per_minute[1]:.2f}:"
        f" {'met' if per_minute[0] <= per_minute[1] else 'NOT met'}",
        f"    (chance of confirm on counting at least {on.count} at equal rates: {chance:.2f};"
        f" {'significantly higher' if chance < 1 - CONFIDENCE else 'no significant difference'})",
    ]
