"""Quality score of a route (0-100) from the metrics of its lanes.

A lane scores `100 x success x latency factor`, where success is one minus the
larger of its error and loss rates and the latency factor is
`1 / (1 + mean latency / 250 ms)`; a route scores as its weakest lane, so a
route is only as good as its worst protocol or class. No data scores 0.
"""

from collections.abc import Iterable

from schemas.wire import LaneStats

LATENCY_SCALE_MS = 250.0


def lane_quality(lane: LaneStats) -> float:
    if lane.count == 0:
        return 0.0
    success = 1.0 - max(lane.error_pct, lane.loss_pct) / 100.0
    latency = lane.latency_mean_ms or 0.0
    return 100.0 * success / (1.0 + latency / LATENCY_SCALE_MS)


def route_quality(lanes: Iterable[LaneStats]) -> float:
    """The weakest lane's score, rounded to one decimal (the hot path: no calls per lane)."""
    weakest: float | None = None
    for lane in lanes:
        if lane.count <= 0:
            continue
        error, loss = lane.error_pct, lane.loss_pct
        success = 1.0 - (loss if loss > error else error) / 100.0
        score = 100.0 * success / (1.0 + (lane.latency_mean_ms or 0.0) / LATENCY_SCALE_MS)
        if weakest is None or score < weakest:
            weakest = score
    return 0.0 if weakest is None else round(weakest, 1)
