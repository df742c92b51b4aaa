"""Per-target reply timeout from a smoothed RTT and its variation (RFC 6298, as TCP's RTO).

`RttEstimator.sample(rtt_s)` folds one measured round-trip time in:
the first sample sets SRTT = R and RTTVAR = R / 2; later ones
RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R| and SRTT = 7/8 SRTT + 1/8 R.
`timeout()` is SRTT + max(G, 4 RTTVAR), clamped to the configured floor and
ceiling; before any sample it is the ceiling (nothing is known yet). G, the
clock granularity of the RFC, is 1 ms here: asyncio timers are no finer.

The timeout is when a missing reply becomes *suspected*: the attempt itself
still waits up to probe-duration, so a slow reply is measured as slow, and a
suspected target is confirmed by re-probes (`agents.probe.confirm`).
"""

from __future__ import annotations

from dataclasses import dataclass

#: RFC 6298 gains and clock granularity.
ALPHA = 1 / 8
BETA = 1 / 4
K = 4
GRANULARITY_S = 0.001


@dataclass(frozen=True)
class TimeoutBounds:
    """Floor and ceiling of the reply timeout, in seconds."""

    floor: float
    ceiling: float

    def __post_init__(self) -> None:
        if not 0 < self.floor <= self.ceiling:
            raise ValueError(f"reply timeout bounds need 0 < min <= max, got {self}")


class RttEstimator:
    """Smoothed RTT and variation of one target; see the module docstring."""

    __slots__ = ("bounds", "rttvar", "samples", "srtt")

    def __init__(self, bounds: TimeoutBounds) -> None:
        self.bounds = bounds
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.samples = 0

    def sample(self, rtt_s: float) -> None:
        """Fold in one round-trip time (seconds; negative values are ignored)."""
        if rtt_s < 0:
            return
        srtt = self.srtt
        if srtt is None:
            self.srtt = rtt_s
            self.rttvar = rtt_s / 2
        else:
            self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(srtt - rtt_s)
            self.srtt = (1 - ALPHA) * srtt + ALPHA * rtt_s
        self.samples += 1

    def timeout(self) -> float:
        """Seconds to wait for a reply before suspecting it lost."""
        if self.srtt is None:
            return self.bounds.ceiling
        rto = self.srtt + max(GRANULARITY_S, K * self.rttvar)
        return min(max(rto, self.bounds.floor), self.bounds.ceiling)
