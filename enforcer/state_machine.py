"""The path state machine of one lane or one probe, pure and clock-injected.

States: `unknown` (no judged window yet; usable, not meeting SLA), `up`,
`down` (for the hold-down), `probation` (back in service after the hold-down
for one window judged on fresh data only). A route with active probes leaves
`down` only once its probes have passed since the fault (probe-verified
recovery, `RecoveryEvidence`): at a hold-down end without that, the hold-down
is extended with the next multiplier and the machine stays down. Times of transitions come from the
evidence (window end, evidence timestamp, hold-down end), never from the
local clock, so two enforcers fed the same input reach the same states at the
same instants; the clock only decides *when* an expired hold-down is noticed.
"""

from collections.abc import Callable
from dataclasses import dataclass

from enforcer.holddown import HoldDownPolicy, RecoveryEvidence
from schemas.wire import PathStateName

Clock = Callable[[], float]

#: Tolerance when comparing window bounds with transition instants.
_EPSILON = 1e-6


@dataclass
class TrackState:
    """Everything a machine must persist to survive a restart or a failover."""

    state: PathStateName = "unknown"
    since: float = 0.0
    reason: str = ""
    hold_down_until: float | None = None
    multiplier: int = 0
    healthy_since: float | None = None
    meets_sla: bool = False
    alarm_raised_at: float | None = None


class Revision:
    """A counter shared by the machines of one route, bumped whenever a track changes.

    It lets the route reuse what it derived from its machines (route state,
    reasons, lane states) for as long as none of them changed.
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def bump(self) -> None:
        self.value += 1


@dataclass(frozen=True)
class Transition:
    """A change of state, when it took effect and why."""

    previous: PathStateName
    state: PathStateName
    at: float
    reason: str


class PathMachine:
    """unknown / up / down / probation with a growing, decaying hold-down."""

    __slots__ = ("clock", "policy", "recovery", "revision", "track")

    def __init__(
        self,
        policy: HoldDownPolicy,
        clock: Clock,
        track: TrackState | None = None,
        revision: Revision | None = None,
        recovery: RecoveryEvidence | None = None,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.track = track if track is not None else TrackState()
        self.revision = revision if revision is not None else Revision()
        #: The route's probe replies since its last fault (shared by its machines).
        self.recovery = recovery if recovery is not None else RecoveryEvidence()

    @property
    def state(self) -> PathStateName:
        return self.track.state

    def _move(self, state: PathStateName, at: float, reason: str) -> Transition:
        track = self.track
        transition = Transition(track.state, state, at, reason)
        self.revision.bump()
        track.state = state
        track.since = at
        track.reason = reason
        return transition

    def _go_down(self, at: float, reason: str) -> Transition:
        track = self.track
        if track.state == "up" and track.healthy_since is not None:
            track.multiplier, track.healthy_since = self.policy.decay(
                track.multiplier, track.healthy_since, at
            )
        track.multiplier += 1
        track.hold_down_until = at + self.policy.duration(track.multiplier)
        track.healthy_since = None
        track.meets_sla = False
        self.recovery.reset()
        self.recovery.held = ""
        return self._move("down", at, reason)

    def _expire(self, now: float) -> Transition | None:
        track = self.track
        if track.state != "down" or track.hold_down_until is None:
            return None
        if track.hold_down_until > now:
            return None
        at = track.hold_down_until
        recovery = self.recovery
        missing = recovery.missing()
        if missing:
            return self._extend(at, missing)
        track.hold_down_until = None
        recovery.held = ""
        if recovery.required <= 0:
            reason = f"hold-down over, on probation for one window ({track.reason})"
        else:
            reason = f"hold-down over, {recovery.passed()}, on probation for one window"
            reason += f" ({track.reason})"
        # with no hold-down to wait for (base 0) the probes may pass after its end
        verified = min(recovery.verified_since or at, now)
        return self._move("probation", max(at, verified), reason)

    def _extend(self, at: float, missing: str) -> Transition | None:
        """At the hold-down end `at`, the probes have not passed since the fault: stay
        down, held for the next multiplier's hold-down (down -> down, None when nothing
        changed: a hold-down of 0 s is looked at again at the next window or tick)."""
        track = self.track
        track.multiplier = self.policy.escalated(track.multiplier)
        until = at + self.policy.duration(track.multiplier)
        if until <= at and missing == self.recovery.held:
            return None
        if until > at:
            track.hold_down_until = until
        self.recovery.held = missing
        self.revision.bump()
        held = f"hold-down extended to {until - at:g} s (x{track.multiplier}): {missing}"
        return Transition("down", "down", at, f"{held} ({track.reason})")

    def tick(self) -> Transition | None:
        """Notice an expired hold-down: `down` -> `probation` at the hold-down end, or
        `down` -> `down` with the hold-down extended while the probes have not passed."""
        return self._expire(self.clock())

    def observe(
        self, passed: bool | None, reason: str, window_start: float, window_end: float
    ) -> list[Transition]:
        """Judge one closed window: `passed` None means too few samples to judge."""
        transitions: list[Transition] = []
        track = self.track
        if track.state == "down":
            # only a down machine can expire: the clock is read only then
            expired = self._expire(max(window_end, self.clock()))
            if expired is not None:
                transitions.append(expired)
        if passed is None:
            return transitions
        if passed and track.state == "up":
            # the common case, a healthy lane staying healthy: decay the multiplier
            reason = reason or "meets SLA"
            if not self._steady(reason):
                if track.healthy_since is None:
                    track.healthy_since = window_end
                track.multiplier, track.healthy_since = self.policy.decay(
                    track.multiplier, track.healthy_since, window_end
                )
                track.meets_sla = True
                track.reason = reason
                self.revision.bump()
            return transitions
        if track.state == "down":
            return transitions
        if track.state == "probation" and window_start < track.since - _EPSILON:
            # the window holds data from before probation: tracking restarts after it
            return transitions
        track.meets_sla = passed
        self.revision.bump()
        if not passed:
            transitions.append(self._go_down(window_end, reason))
        else:  # unknown or probation, passed
            track.healthy_since = window_end
            transitions.append(self._move("up", window_end, reason or "meets SLA"))
        return transitions

    def _steady(self, reason: str) -> bool:
        """Up and healthy with nothing left to decay: a pass with `reason` changes nothing."""
        track = self.track
        return (
            track.state == "up"
            and track.meets_sla
            and track.multiplier == 0
            and track.healthy_since is not None
            and self.policy.base > 0
            and track.reason == reason
        )

    def quiet_until(self) -> float | None:
        """Until when observing a pass or an unjudged window changes nothing: forever
        (inf) when steady up, the hold-down end when held down, None when it would."""
        track = self.track
        if track.state == "down" and track.hold_down_until is not None:
            return track.hold_down_until
        return float("inf") if self._steady("meets SLA") else None

    def fail(self, reason: str, at: float) -> Transition | None:
        """Immediate evidence of failure (fast path): down unless already down (then
        it still tells that the fault has not cleared)."""
        if self.track.state == "down":
            self.recovery.reset()
            return None
        return self._go_down(at, reason)
