"""Per-lane accumulators filled at ingest, and the lanes a closed window reports
(docs/internals.md, "Lanes").

During a window the measurements of a route are accumulated per *fine lane*
(a `schemas.wire.Lane` naming its destination and probe) in a `LaneAccumulator`:
the `ok` latencies and their timestamps (both packed in an `array('d')`) and
the other outcomes counted. Jitter is worked out at close over the series in
event-time order (the arrival order unless the timestamps say otherwise). At
close every fine lane is summarised once, and the reported lanes are merges
of summaries, following the `LanePlan` of the window's layout (its set of
fine lanes), worked out once and shared by every route with that layout:

* the aggregate lane of each (protocol, traffic_class, source), destination and probe empty;
* for `probe` sources, one lane per (protocol, traffic_class, probe, destination)
  (none for measurements that name neither, which only the aggregate lane shows);
* for `passive` sources, one lane per tracked destination (probe empty).

Jitter is computed per fine lane (one probe towards one destination) and pooled.
"""

from __future__ import annotations

from array import array
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter, le, sub

from msgspec.structs import replace

from aggregator.stats import LOSS_OUTCOMES, mos
from schemas.wire import Lane, LaneStats

_by_time = itemgetter(0)


class LaneAccumulator:
    """What a window keeps of one fine lane: compact, filled measurement by measurement.

    `latencies` / `times`: latency and timestamp of every `ok` measurement with a
    latency, in arrival order, packed 8 bytes each (keeping the decoded float
    objects instead held 35 MB more with 10,000 routes live); `others`: counts
    of every other measurement by outcome (`ok` without a latency counts as
    "ok" here). Jitter is worked out when the window closes (`summarize`), so
    adding a measurement is two appends.
    """

    __slots__ = ("latencies", "others", "times")

    def __init__(self) -> None:
        self.latencies = array("d")
        self.times = array("d")
        self.others: dict[str, int] | None = None

    def add_latency(self, ts: float, latency: float) -> None:
        """One `ok` measurement with a latency (`RouteWindows.add` inlines this)."""
        self.times.append(ts)
        self.latencies.append(latency)

    def add_other(self, outcome: str) -> None:
        """One measurement that is not an `ok` with a latency."""
        others = self.others
        if others is None:
            self.others = {outcome: 1}
        else:
            others[outcome] = others.get(outcome, 0) + 1


#: summary of a lane: (count, outcomes, sorted ok latencies, jitter total, jitter pairs)
Summary = tuple[int, dict[str, int], list[float], float, int]


def summarize(lane: LaneAccumulator) -> Summary:
    """Summarise one fine lane."""
    packed = lane.latencies
    n_latencies = len(packed)
    jitter_total = 0.0
    if n_latencies > 1:
        times = lane.times
        series: Sequence[float]
        if all(map(le, times, times[1:])):
            series = packed  # arrived in event-time order: the usual case
        else:
            # event-time order, ties in arrival order (a stable sort)
            series = [v for _, v in sorted(zip(times, packed, strict=True), key=_by_time)]
        jitter_total = sum(map(abs, map(sub, series[1:], series)))
    latencies = sorted(packed)
    others = lane.others
    if others is None:
        return (
            n_latencies,
            {"ok": n_latencies} if n_latencies else {},
            latencies,
            jitter_total,
            n_latencies - 1 if n_latencies else 0,
        )
    outcomes = dict(others)
    if n_latencies:
        outcomes["ok"] = outcomes.get("ok", 0) + n_latencies
    return (
        n_latencies + sum(others.values()),
        outcomes,
        latencies,
        jitter_total,
        n_latencies - 1 if n_latencies else 0,
    )


def merge(summaries: list[Summary]) -> Summary:
    """One summary of several lanes (outcomes summed, latencies merged and sorted)."""
    outcomes: dict[str, int] = {}
    latencies: list[float] = []
    count = 0
    jitter_total = 0.0
    jitter_pairs = 0
    for lane_count, lane_outcomes, lane_latencies, lane_jitter, lane_pairs in summaries:
        count += lane_count
        for outcome, n in lane_outcomes.items():
            outcomes[outcome] = outcomes.get(outcome, 0) + n
        latencies.extend(lane_latencies)
        jitter_total += lane_jitter
        jitter_pairs += lane_pairs
    latencies.sort()
    return (count, outcomes, latencies, jitter_total, jitter_pairs)


def pooled(summaries: list[Summary], members: tuple[int, ...]) -> Summary:
    """The summary of the fine lanes at positions `members`: one as it is, several merged."""
    if len(members) == 1:
        return summaries[members[0]]
    return merge([summaries[i] for i in members])


def lane_stats(lane: Lane, summary: Summary) -> LaneStats:
    """LaneStats of a summary; latency figures over `ok` measurements only.

    Only fields that differ from LaneStats' defaults are passed (msgspec's
    keyword matching gets several times slower past about 15 keywords).
    """
    protocol, traffic_class, source, destination, probe = lane
    count, outcomes, values, jitter_total, jitter_pairs = summary
    errors = count - outcomes.get("ok", 0)
    loss_pct = 0.0
    if errors:
        lost = 0
        for outcome, n in outcomes.items():
            if outcome in LOSS_OUTCOMES:
                lost += n
        loss_pct = 100.0 * lost / count
    jitter_ms = jitter_total / jitter_pairs if jitter_pairs else None
    if values:
        n = len(values)
        middle = n >> 1
        mean = sum(values) / n
        # exact median: the middle value, or the mean of the two middle values
        median = values[middle] if n & 1 else (values[middle - 1] + values[middle]) / 2.0
        stats = LaneStats(
            protocol=protocol,
            traffic_class=traffic_class,
            destination=destination,
            probe=probe,
            count=count,
            outcomes=outcomes,
            latency_min_ms=values[0],
            latency_max_ms=values[-1],
            latency_mean_ms=mean,
            latency_median_ms=median,
            # nearest rank: the value at rank ceil(0.9 n), n >= 1
            latency_p90_ms=values[(9 * n + 9) // 10 - 1],
            jitter_ms=jitter_ms,
            mos=mos(mean, jitter_ms, loss_pct),
        )
    else:
        stats = LaneStats(
            protocol=protocol,
            traffic_class=traffic_class,
            destination=destination,
            probe=probe,
            count=count,
            outcomes=outcomes,
            jitter_ms=jitter_ms,
        )
    if errors or source != "probe":
        stats = replace(
            stats,
            source=source,
            errors=errors,
            error_pct=100.0 * errors / count,
            loss_pct=loss_pct,
        )
    return stats


@dataclass(frozen=True, slots=True)
class DetailStep:
    """One reported detail lane: its identity and the positions of its fine lanes."""

    lane: Lane
    members: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AggregateStep:
    """One reported aggregate lane; `twin` is the position of the detail lane with the
    same single member, whose figures it copies, when there is one."""

    lane: Lane
    members: tuple[int, ...]
    twin: int | None


@dataclass(frozen=True, slots=True)
class LanePlan:
    """How the fine lanes of one layout (a set of fine lanes) become the reported lanes.

    `order` fixes the position of each fine lane; steps name fine lanes by
    position. Worked out once per layout and shared by every route with that
    layout: routes with the same probes and tracked destinations have the same
    plan, so closing a window only summarises lanes and builds their stats.
    """

    order: tuple[Lane, ...]
    aggregates: tuple[AggregateStep, ...]
    details: tuple[DetailStep, ...]


def lane_plan(lanes: Iterable[Lane], tracked: frozenset[str]) -> LanePlan:
    """The plan of a layout: aggregate lanes in sorted order, then detail lanes in sorted
    order (Lane order: protocol, class, source, destination, probe)."""
    order = tuple(sorted(lanes))
    aggregate_members: dict[Lane, list[int]] = {}
    detail_members: dict[Lane, list[int]] = {}
    for position, lane in enumerate(order):
        aggregate_members.setdefault(lane.aggregate, []).append(position)
        if lane.source == "probe" and (lane.probe or lane.destination):
            detail = lane
        elif lane.source == "passive" and lane.destination in tracked:
            detail = lane._replace(probe="")
        else:
            continue
        detail_members.setdefault(detail, []).append(position)
    details = tuple(
        DetailStep(detail, tuple(members)) for detail, members in sorted(detail_members.items())
    )
    #: detail lane of each fine lane that is a detail lane on its own
    single_detail = {
        step.members[0]: index for index, step in enumerate(details) if len(step.members) == 1
    }
    aggregates = tuple(
        AggregateStep(
            aggregate,
            tuple(members),
            single_detail.get(members[0]) if len(members) == 1 else None,
        )
        for aggregate, members in sorted(aggregate_members.items())
    )
    return LanePlan(order, aggregates, details)


#: plans by (layout, tracked destinations); cleared when it holds PLAN_CACHE_SIZE plans
_plans: dict[tuple[frozenset[Lane], frozenset[str]], LanePlan] = {}
PLAN_CACHE_SIZE = 1024
#: layouts with more fine lanes than this (passive sessions towards many destinations,
#: which differ from window to window) are planned afresh and not kept: the cache
#: holds at most PLAN_CACHE_SIZE x PLAN_CACHE_MAX_LANES fine lanes
PLAN_CACHE_MAX_LANES = 256


def plan_for(lanes: Collection[Lane], tracked: frozenset[str]) -> LanePlan:
    """The shared plan of a layout (built on first use)."""
    if len(lanes) > PLAN_CACHE_MAX_LANES:
        return lane_plan(lanes, tracked)
    layout = (frozenset(lanes), tracked)
    plan = _plans.get(layout)
    if plan is None:
        if len(_plans) >= PLAN_CACHE_SIZE:
            _plans.clear()
        plan = _plans[layout] = lane_plan(layout[0], tracked)
    return plan


def window_lanes(
    fine: Mapping[Lane, LaneAccumulator], tracked: Iterable[str] = ()
) -> list[LaneStats]:
    """The lanes of a closed window, aggregate lanes first, in a stable order (the
    layout's `LanePlan`)."""
    tracked_set = tracked if isinstance(tracked, frozenset) else frozenset(tracked)
    plan = plan_for(fine, tracked_set)
    summaries = [summarize(fine[lane]) for lane in plan.order]
    detail_lanes = [
        lane_stats(detail.lane, pooled(summaries, detail.members)) for detail in plan.details
    ]
    lanes: list[LaneStats] = []
    for aggregate in plan.aggregates:
        if aggregate.twin is not None:
            # the same figures as its only detail lane: a copy without the detail
            lanes.append(replace(detail_lanes[aggregate.twin], destination="", probe=""))
            continue
        lanes.append(lane_stats(aggregate.lane, pooled(summaries, aggregate.members)))
    lanes.extend(detail_lanes)
    return lanes
