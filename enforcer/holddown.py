"""Hold-down: how long a failed path stays out of service, and the evidence that ends it.

The hold-down of a down episode is `base x multiplier`, capped at `max`; the
multiplier is the number of consecutive down episodes and loses one step per
`base` seconds of continuous health (like Envoy's ejection multiplier).

What ends a hold-down depends on the route (`RecoveryEvidence`): a route with
active probes (`probe-verified`) needs its `recovery_probes` most recent probe
replies on every enforced probe lane to have succeeded since its last fault;
until then each hold-down end extends the hold-down (`PathMachine` applies
this). A route judged on passive traffic alone, or with `recovery-probes: 0`
(`organic-traffic`), goes on probation at the hold-down end as it always did.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from schemas.wire import Lane, LaneStats, RecoveryRule

#: Most probe lanes whose replies one route tracks while down (others cannot hold it).
MAX_RECOVERY_LANES = 512
#: Lanes named in the reason a route is held (the rest are counted).
_NAMED_LANES = 3


@dataclass(frozen=True)
class HoldDownPolicy:
    """Base and cap of the hold-down, in seconds, and the probe replies that end it."""

    base: float
    max: float
    #: Successful probe replies in a row every enforced probe lane needs (0: organic traffic).
    recovery_probes: int = 0

    def duration(self, multiplier: int) -> float:
        """Seconds a path stays down in its `multiplier`-th consecutive episode."""
        return min(self.base * max(multiplier, 1), max(self.max, self.base))

    def escalated(self, multiplier: int) -> int:
        """The multiplier of a hold-down extended once more (unchanged at the cap)."""
        return (
            multiplier + 1
            if self.duration(multiplier + 1) > self.duration(multiplier)
            else multiplier
        )

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


def _label(key: Lane) -> str:
    protocol, traffic_class, _source, destination, probe = key
    if probe:
        return f"{probe} {destination} ({protocol}/{traffic_class})".replace("  ", " ")
    return f"{protocol}/{traffic_class}"


class RecoveryEvidence:
    """The probe replies of one route since its last fault, shared by its machines.

    Fed every window that closes while the route is down. Per probe lane, the
    streak is the number of replies in a row that succeeded, newest last: a
    window without errors adds its count; a window with errors holds its
    successful replies only (a window does not say in which order its replies
    came: its successes are taken as the newest, so a lossy path that still
    passes its limits is not held for ever, while a dead one, with no success
    at all, is); immediate evidence of failure (fast path: consecutive
    failures, link down) resets every streak. The probation window then judges
    the route against its limits as always. `held` is why the route's last
    hold-down end was extended (empty when it was not).
    """

    __slots__ = ("held", "probes", "protocols", "required", "streaks", "verified_since")

    def __init__(
        self,
        required: int = 0,
        probes: frozenset[str] = frozenset(),
        protocols: frozenset[str] = frozenset(),
    ) -> None:
        #: Replies in a row each lane needs; 0 when the route recovers on organic traffic.
        self.required = required
        #: Enforced probes whose per-destination lanes count.
        self.probes = probes
        #: Protocols whose aggregate lanes (source probe) count.
        self.protocols = protocols
        self.streaks: dict[Lane, int] = {}
        #: End of the window after which every lane had its streak, None while one has not.
        self.verified_since: float | None = None
        self.held = ""

    @property
    def rule(self) -> RecoveryRule:
        return "probe-verified" if self.required > 0 else "organic-traffic"

    def _counts(self, lane: LaneStats) -> bool:
        if lane.source != "probe":
            return False
        if lane.probe:
            return lane.probe in self.probes
        return not lane.destination and lane.protocol in self.protocols

    def reset(self) -> None:
        """A new fault: no reply before it tells of recovery."""
        self.streaks.clear()
        self.verified_since = None

    def observe(self, lanes: Iterable[LaneStats], end: float) -> None:
        """Take the replies of a window (ending at `end`) closed while the route is down."""
        if self.required <= 0:
            return
        streaks = self.streaks
        short = False
        for lane in lanes:
            if lane.count <= 0 or not self._counts(lane):
                continue
            key = lane.lane
            streak = streaks.get(key)
            if streak is None and len(streaks) >= MAX_RECOVERY_LANES:
                continue
            ok = max(lane.count - lane.errors, 0)
            streak = ok if lane.errors > 0 else (streak or 0) + ok
            streaks[key] = streak
            short = short or streak < self.required
        if short or not streaks or any(s < self.required for s in streaks.values()):
            self.verified_since = None
        elif self.verified_since is None:
            self.verified_since = end

    def missing(self) -> str:
        """Why the route may not come back yet; empty when it may."""
        if self.required <= 0 or self.verified_since is not None:
            return ""
        if not self.streaks:
            return "no probe reply since the fault"
        short = [(key, n) for key, n in self.streaks.items() if n < self.required]
        named = ", ".join(
            f"{_label(key)} {n} of {self.required} replies ok in a row"
            for key, n in short[:_NAMED_LANES]
        )
        more = f" and {len(short) - _NAMED_LANES} more lanes" if len(short) > _NAMED_LANES else ""
        return f"probes not passed since the fault: {named}{more}"

    def passed(self) -> str:
        """How the route earned its way back (for the probation reason)."""
        if self.required <= 0:
            return "on organic traffic"
        return f"probes passed since the fault ({self.required} replies in a row on every lane)"
