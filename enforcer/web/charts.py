"""What the route page plots: the look-back spans, which lane, its series from the
history store, and the lines of the thresholds that judge it.

A lane is named in URLs as `protocol/class/source[/probe[/destination]]`. The
threshold lines follow the enforcer's rule: a probe lane whose probe profile has
an SLA is judged by that SLA (max-loss, latency max / mean, max-jitter); an
aggregate or plugin lane of tcp / udp / tls / http by the route's reachability
profile (acceptable-error-threshold, time-to-establishment max / mean). A 0
limit is off and is not drawn.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from enforcer.history_reader import RouteHistory
from enforcer.route_spec import REACHABILITY_PROTOCOLS, RouteSpec
from schemas.wire import Alarm, LaneState, PathEvent

#: The spans offered, in seconds.
SPANS: dict[str, int] = {"15m": 900, "1h": 3600, "24h": 86400, "7d": 604800}
DEFAULT_SPAN = "1h"

#: Series of every chart point, as named in HistoryRow and LaneStats alike.
SERIES = (
    "latency_min_ms",
    "latency_mean_ms",
    "latency_median_ms",
    "latency_p90_ms",
    "latency_max_ms",
    "loss_pct",
    "error_pct",
    "jitter_ms",
)


class BadRequest(ValueError):
    """A page parameter that cannot be used; the message says why."""


def parse_span(span: str) -> int:
    """Seconds of a span name; BadRequest names the accepted ones."""
    if span not in SPANS:
        raise BadRequest(f"span {span[:20]!r} is not one of {', '.join(SPANS)}")
    return SPANS[span]


class LaneId(msgspec.Struct, frozen=True, order=True):
    """One lane of a route, ordered as `show service-path` lists lanes."""

    traffic_class: str
    protocol: str
    source: str
    probe: str = ""
    destination: str = ""

    @property
    def slug(self) -> str:
        parts = [self.protocol, self.traffic_class, self.source]
        if self.probe or self.destination:
            parts += [self.probe, self.destination]
        return "/".join(parts)

    @property
    def label(self) -> str:
        target = "@".join(p for p in (self.probe, self.destination) if p) or "(all)"
        return f"{self.protocol}/{self.traffic_class} {self.source} {target}"

    @property
    def aggregate(self) -> bool:
        return not self.probe and not self.destination


def lane_of(item: Any) -> LaneId:
    """The LaneId of a LaneState, LaneStats or HistoryRow."""
    return LaneId(item.traffic_class, item.protocol, item.source, item.probe, item.destination)


def parse_lane(slug: str, known: Iterable[LaneId]) -> LaneId:
    """The lane a slug names, among the route's known lanes."""
    for lane in known:
        if lane.slug == slug:
            return lane
    raise BadRequest(f"lane {slug[:100]!r} is not a lane of this route")


def default_lane(lanes: list[LaneId], states: list[LaneState]) -> LaneId | None:
    """The first judged aggregate lane, else the first aggregate lane, else the first lane."""
    judged = sorted(lane_of(s) for s in states if s.enforced and not s.probe and not s.destination)
    aggregates = [lane for lane in lanes if lane.aggregate]
    for choice in (judged, aggregates, lanes):
        if choice:
            return choice[0]
    return None


class Limit(msgspec.Struct, frozen=True):
    """A horizontal line on one chart (`latency`, `loss`, `error` or `jitter`)."""

    chart: str
    label: str
    value: float


def limits_for(spec: RouteSpec | None, lane: LaneId) -> list[Limit]:
    """The threshold lines that judge `lane` (see the module docstring)."""
    if spec is None:
        return []
    probe = spec.probes.get(lane.probe) if lane.probe else None
    if probe is not None and probe.sla is not None:
        sla = probe.sla
        found = [
            Limit("loss", "SLA max-loss", sla.max_loss),
            Limit("latency", "SLA latency max", sla.latency.max),
            Limit("latency", "SLA latency mean", sla.latency.mean),
        ]
        if sla.max_jitter is not None:
            found.append(Limit("jitter", "SLA max-jitter", sla.max_jitter))
    elif lane.protocol in REACHABILITY_PROTOCOLS:
        limits = spec.thresholds_for(lane.protocol, lane.traffic_class)  # type: ignore[arg-type]
        tte = limits.time_to_establishment
        found = [Limit("error", "acceptable-error-threshold", limits.acceptable_error_threshold)]
        if tte.enabled:
            found += [
                Limit("latency", "time-to-establishment max", tte.max),
                Limit("latency", "time-to-establishment mean", tte.mean),
            ]
    else:
        return []
    return [limit for limit in found if limit.value > 0]


def point(item: Any) -> dict[str, float | None]:
    """The chart figures of a HistoryRow or LaneStats."""
    return {name: getattr(item, name) for name in SERIES}


class ChartData(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the route page's charts draw, embedded in the page as JSON.

    `t` are window ends (Unix s); `series[name][i]` belongs to `t[i]`.
    """

    span: str
    since: float
    until: float
    resolution: int
    lane: str
    t: list[float]
    series: dict[str, list[float | None]]
    limits: list[Limit]
    transitions: list[PathEvent]
    alarms: list[Alarm]


def chart_data(
    history: RouteHistory, span: str, lane: LaneId | None, spec: RouteSpec | None
) -> ChartData:
    """The selected lane's series, the route's transitions and alarms, the limit lines."""
    rows = [row for row in history.rows if lane is not None and lane_of(row) == lane]
    return ChartData(
        span=span,
        since=history.since,
        until=history.until,
        resolution=history.resolution,
        lane=lane.slug if lane is not None else "",
        t=[row.window_end for row in rows],
        series={name: [getattr(row, name) for row in rows] for name in SERIES},
        limits=limits_for(spec, lane) if lane is not None else [],
        transitions=history.transitions,
        alarms=history.alarms,
    )
