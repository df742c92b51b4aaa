"""Definitions of the statistics of one lane over one window, the loss outcomes and MOS.

The figures are computed in one place, `aggregator.lanes.lane_stats` (inline, for
speed); their definitions (docs/metrics.md repeats them):

* median: the middle value of the sorted latencies, or the mean of the two
  middle values when the count is even (exact, like `statistics.median`);
* p90: nearest-rank percentile, the value at rank ceil(0.9 * n) of the sorted
  latencies (always one of the samples);
* jitter: mean absolute difference of consecutive round-trip times to the same
  destination, in event-time order, pooled over the destinations of the lane;
* loss: outcomes with no answer (`timeout`, `send-failed`,
  `timeout-before-establishment`) as a percentage of the count;
* MOS: the usual simplification of the ITU-T G.107 E-model used by network
  monitors: effective latency = mean RTT + 2 x jitter + 10 ms; R = 93.2 -
  effective / 40 below 160 ms, else 93.2 - (effective - 120) / 10; R -= 2.5 x
  loss %; R clamped to 0..100; MOS = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R),
  clamped to 1..4.5.
  No MOS without a latency sample.
"""

from __future__ import annotations

LOSS_OUTCOMES: frozenset[str] = frozenset(
    {"timeout", "send-failed", "timeout-before-establishment"}
)


def mos(mean_rtt_ms: float, jitter_ms: float | None, loss_pct: float) -> float:
    """Mean opinion score (1..4.5) from the simplified E-model described above."""
    effective = mean_rtt_ms + 2.0 * (jitter_ms or 0.0) + 10.0
    r_factor = 93.2 - effective / 40.0 if effective < 160.0 else 93.2 - (effective - 120.0) / 10.0
    r_factor -= 2.5 * loss_pct
    # clamps written as comparisons: this runs once per lane at every close
    if r_factor > 100.0:
        r_factor = 100.0
    elif r_factor < 0.0:
        r_factor = 0.0
    score = 1.0 + 0.035 * r_factor + 0.000007 * r_factor * (r_factor - 60.0) * (100.0 - r_factor)
    if score > 4.5:
        return 4.5
    return score if score > 1.0 else 1.0
