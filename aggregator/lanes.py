"""Which lanes a closed window reports, and the statistics of each (docs/internals.md, "Lanes").

During a window the measurements of a route are kept per *fine lane*
`(protocol, traffic_class, source, probe, destination)`. At close every fine
lane is summarised once, and the reported lanes are merges of summaries:

* the aggregate lane of each (protocol, traffic_class, source), destination and probe empty;
* for `probe` sources, one lane per (protocol, traffic_class, probe, destination)
  (none for measurements that name neither, which only the aggregate lane shows);
* for `passive` sources, one lane per tracked destination (probe empty).

Jitter is computed per fine lane (one probe towards one destination) and pooled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from operator import attrgetter

from aggregator.stats import LOSS_OUTCOMES, median, mos, nearest_rank
from schemas.wire import LaneStats, Measurement, Protocol, SourceKind, TrafficClass

#: (protocol, traffic_class, source, probe, destination)
FineKey = tuple[Protocol, TrafficClass, SourceKind, str, str]

_by_ts = attrgetter("ts")


class LaneSummary:
    """Mergeable summary of a lane: counts, outcomes, ok latencies, jitter sums."""

    __slots__ = ("count", "jitter_pairs", "jitter_total", "latencies", "outcomes")

    def __init__(self) -> None:
        self.count = 0
        self.outcomes: dict[str, int] = {}
        self.latencies: list[float] = []
        self.jitter_total = 0.0
        self.jitter_pairs = 0

    def add(self, other: LaneSummary) -> None:
        self.count += other.count
        outcomes = self.outcomes
        for outcome, n in other.outcomes.items():
            outcomes[outcome] = outcomes.get(outcome, 0) + n
        self.latencies.extend(other.latencies)
        self.jitter_total += other.jitter_total
        self.jitter_pairs += other.jitter_pairs


def summarize(items: list[Measurement]) -> LaneSummary:
    """Summarise the measurements of one fine lane (one probe, one destination), one pass."""
    summary = LaneSummary()
    summary.count = len(items)
    outcomes = summary.outcomes
    latencies = summary.latencies
    previous_ts = -1.0
    ordered = True
    for m in items:
        outcome = m.outcome
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if m.ts < previous_ts:
            ordered = False
        previous_ts = m.ts
        if outcome == "ok" and m.latency_ms is not None:
            latencies.append(m.latency_ms)
    if not ordered:
        latencies[:] = [
            m.latency_ms
            for m in sorted(items, key=_by_ts)
            if m.outcome == "ok" and m.latency_ms is not None
        ]
    if len(latencies) > 1:
        total = 0.0
        previous = latencies[0]
        for value in latencies:
            total += abs(value - previous)
            previous = value
        summary.jitter_total = total
        summary.jitter_pairs = len(latencies) - 1
    return summary


def lane_stats(
    protocol: Protocol,
    traffic_class: TrafficClass,
    source: SourceKind,
    destination: str,
    probe: str,
    summary: LaneSummary,
) -> LaneStats:
    """LaneStats of a summary; latency figures over `ok` measurements only."""
    count = summary.count
    ok = summary.outcomes.get("ok", 0)
    errors = count - ok
    lost = 0
    for outcome, n in summary.outcomes.items():
        if outcome in LOSS_OUTCOMES:
            lost += n
    error_pct = 100.0 * errors / count if count else 0.0
    loss_pct = 100.0 * lost / count if count else 0.0
    jitter_ms = summary.jitter_total / summary.jitter_pairs if summary.jitter_pairs else None
    values = summary.latencies
    if values:
        values.sort()
        mean = sum(values) / len(values)
        return LaneStats(
            protocol=protocol,
            traffic_class=traffic_class,
            source=source,
            destination=destination,
            probe=probe,
            count=count,
            errors=errors,
            error_pct=error_pct,
            outcomes=summary.outcomes,
            latency_min_ms=values[0],
            latency_max_ms=values[-1],
            latency_mean_ms=mean,
            latency_median_ms=median(values),
            latency_p90_ms=nearest_rank(values, 90),
            jitter_ms=jitter_ms,
            loss_pct=loss_pct,
            mos=mos(mean, jitter_ms, loss_pct),
        )
    return LaneStats(
        protocol=protocol,
        traffic_class=traffic_class,
        source=source,
        destination=destination,
        probe=probe,
        count=count,
        errors=errors,
        error_pct=error_pct,
        outcomes=summary.outcomes,
        jitter_ms=jitter_ms,
        loss_pct=loss_pct,
    )


def window_lanes(
    fine: Mapping[FineKey, list[Measurement]], tracked: Iterable[str] = ()
) -> list[LaneStats]:
    """The lanes of a closed window, aggregate lanes first, in a stable order."""
    tracked_set = set(tracked)
    aggregates: dict[tuple[Protocol, TrafficClass, SourceKind], LaneSummary] = {}
    details: dict[tuple[Protocol, TrafficClass, SourceKind, str, str], LaneSummary] = {}
    for (protocol, traffic_class, source, probe, destination), items in fine.items():
        if not items:
            continue
        summary = summarize(items)
        aggregate = aggregates.get((protocol, traffic_class, source))
        if aggregate is None:
            aggregate = aggregates[(protocol, traffic_class, source)] = LaneSummary()
        aggregate.add(summary)
        if source == "probe" and (probe or destination):
            details[(protocol, traffic_class, source, destination, probe)] = summary
        elif source == "passive" and destination in tracked_set:
            key = (protocol, traffic_class, source, destination, "")
            existing = details.get(key)
            if existing is None:
                details[key] = summary
            else:
                merged = LaneSummary()
                merged.add(existing)
                merged.add(summary)
                details[key] = merged
    lanes = [
        lane_stats(protocol, traffic_class, source, "", "", summary)
        for (protocol, traffic_class, source), summary in sorted(aggregates.items())
    ]
    lanes.extend(
        lane_stats(protocol, traffic_class, source, destination, probe, summary)
        for (protocol, traffic_class, source, destination, probe), summary in sorted(
            details.items()
        )
    )
    return lanes
