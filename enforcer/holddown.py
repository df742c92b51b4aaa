"""Hold-down arithmetic: grows with repeated down episodes, decays while healthy.

The hold-down of a down episode is `base x multiplier`, capped at `max`; the
multiplier is the number of consecutive down episodes and loses one step per
`base` seconds of continuous health (like Envoy's ejection multiplier).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class HoldDownPolicy:
    """Base and cap of the hold-down, in seconds."""

    base: float
    max: float

    def duration(self, multiplier: int) -> float:
        """Seconds a path stays down in its `multiplier`-th consecutive episode."""
        return min(self.base * max(multiplier, 1), max(self.max, self.base))

    def decay(self, multiplier: int, healthy_since: float, now: float) -> tuple[int, float]:
        """Multiplier after health from `healthy_since` to `now`, and the new decay anchor."""
        if multiplier <= 0 or self.base <= 0:
            return (0 if self.base <= 0 else multiplier), now if self.base <= 0 else healthy_since
        steps = int((now - healthy_since) // self.base)
        if steps <= 0:
            return multiplier, healthy_since
        if steps >= multiplier:
            return 0, healthy_since + steps * self.base
        return multiplier - steps, healthy_since + steps * self.base
