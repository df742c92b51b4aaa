"""The state machines of one route, and settling their changes.

A route has one machine per judged aggregate lane (by `schemas.wire.Lane`),
per probe, per plugin probe and per kind of route-level evidence (link,
neighbour, consecutive failures of no known lane). Every change of a machine
goes through `RouteMachines`: it settles each transition into a `Change`
with what it did to the machine's alarm (raised at the first down of an
enforced machine, updated when a down machine's reason changes (at most every
`ALARM_UPDATE_MIN_INTERVAL_S` of the enforcer's clock), cleared when
it is up again), so nothing outside this module writes a machine's track.
The route's own state is the summary of its enforced machines (`evaluate`).
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Literal

from enforcer.judge import Verdict
from enforcer.reasons import Explanation
from enforcer.route_spec import REACHABILITY_PROTOCOLS, RouteSpec, recovery_evidence
from enforcer.state_machine import Clock, PathMachine, Revision, TrackState, Transition
from schemas.limits import ALARM_UPDATE_MIN_INTERVAL_S
from schemas.wire import (
    Lane,
    LaneState,
    PathState,
    PathStateName,
    ProbeStatus,
    Protocol,
    TrafficClass,
)


@dataclass
class Tracked:
    """One machine and what it judges (for alarms and display)."""

    machine: PathMachine
    protocol: Protocol | None
    traffic_class: TrafficClass | None
    cause: str
    enforced: bool
    kind: str = ""
    #: Why the machine is down (its reason while down), in parts.
    why: Explanation = field(default_factory=Explanation)
    #: When (enforcer clock) its alarm was last updated: ALARM_UPDATE_MIN_INTERVAL_S.
    alarm_updated_at: float = -math.inf


@dataclass(frozen=True)
class AlarmNotice:
    """The alarm of one machine raised, updated (same id, new reason) or cleared."""

    status: Literal["raised", "updated", "cleared"]
    raised_at: float
    cleared_at: float | None
    reason: str
    at: float


@dataclass(frozen=True)
class Change:
    """A transition of one machine of a route, and what it did to its alarm."""

    route: str
    tracked: Tracked
    transition: Transition
    alarm: AlarmNotice | None = None


def _notice(tracked: Tracked, transition: Transition) -> AlarmNotice | None:
    """What `transition` does to the alarm of `tracked` (its track's raise time moved)."""
    if not tracked.enforced:
        return None
    track = tracked.machine.track
    raised_at, state, at = track.alarm_raised_at, transition.state, transition.at
    if state == "down" and raised_at is None:
        track.alarm_raised_at = at
        return AlarmNotice("raised", at, None, transition.reason, at)
    if state == "down" and raised_at is not None:
        return AlarmNotice("updated", raised_at, None, transition.reason, at)
    if state == "up" and raised_at is not None:
        track.alarm_raised_at = None
        return AlarmNotice("cleared", raised_at, at, transition.reason, at)
    return None


def _track_from(item: LaneState | ProbeStatus) -> TrackState:
    """A machine's track as a PathState shows it (a probe meets its SLA when up)."""
    return TrackState(
        state=item.state,
        since=item.since,
        reason=item.reason,
        hold_down_until=item.hold_down_until,
        multiplier=item.hold_down_multiplier,
        healthy_since=item.healthy_since,
        meets_sla=item.meets_sla if isinstance(item, LaneState) else item.state == "up",
        alarm_raised_at=item.alarm_raised_at,
    )


class RouteMachines:
    """Every machine of one route; each change of one settled into a `Change`."""

    def __init__(self, spec: RouteSpec, clock: Clock, revision: Revision) -> None:
        self.spec = spec
        self.clock = clock
        #: Bumped by every change of a machine (shared with the route's view).
        self.revision = revision
        self.lanes: dict[Lane, Tracked] = {}
        self.probes: dict[str, Tracked] = {}
        self.plugins: dict[str, Tracked] = {}
        self.evidence: dict[str, Tracked] = {}
        self.state: PathStateName = "unknown"
        self.raw_in_service = True
        self._evaluated_at = -1
        #: Probe replies since the route's last fault: what ends its hold-downs.
        self.recovery = recovery_evidence(spec)

    # --- making machines ----------------------------------------------------

    def new(
        self,
        protocol: Protocol | None,
        traffic_class: TrafficClass | None,
        cause: str,
        enforced: bool,
        kind: str = "",
        track: TrackState | None = None,
    ) -> Tracked:
        self.revision.bump()
        machine = PathMachine(self.spec.hold_down, self.clock, track, self.revision, self.recovery)
        return Tracked(machine, protocol, traffic_class, cause, enforced, kind)

    def lane(self, key: Lane) -> Tracked:
        """The reachability machine of an aggregate lane, made when first needed."""
        tracked = self.lanes.get(key)
        if tracked is None:
            tracked = self.new(key.protocol, key.traffic_class, "reachability", True)
            self.lanes[key] = tracked
        return tracked

    def probe(self, name: str, protocol: Protocol | None, enforced: bool, kind: str) -> Tracked:
        """The machine of a probe, made when first needed."""
        tracked = self.probes.get(name)
        if tracked is None:
            tracked = self.new(protocol, None, f"probe:{name}", enforced, kind)
            self.probes[name] = tracked
        return tracked

    def plugin(self, name: str) -> Tracked:
        tracked = self.plugins.get(name)
        if tracked is None:
            tracked = self.new(None, None, f"probe:{name}", True, "plugin")
            self.plugins[name] = tracked
        return tracked

    def evidence_of(self, cause: str) -> Tracked:
        """The route-level machine of one kind of evidence (`link`, `neighbour`, ...)."""
        tracked = self.evidence.get(cause)
        if tracked is None:
            protocol: Protocol | None = "link" if cause in ("link", "neighbour") else None
            tracked = self.new(protocol, None, cause, True, "evidence")
            self.evidence[cause] = tracked
        return tracked

    def all(self) -> Iterator[Tracked]:
        return chain(
            self.lanes.values(),
            self.probes.values(),
            self.plugins.values(),
            self.evidence.values(),
        )

    # --- changing machines --------------------------------------------------

    def settle(self, tracked: Tracked, transition: Transition) -> Change:
        """A transition with its alarm (see the module doc)."""
        if transition.previous != transition.state:
            tracked.why.clear()
        alarm = _notice(tracked, transition)
        if alarm is not None and alarm.status == "updated":
            now = self.clock()
            if now - tracked.alarm_updated_at < ALARM_UPDATE_MIN_INTERVAL_S:
                alarm = None  # too soon after the last update: KV shows the new reason
            else:
                tracked.alarm_updated_at = now
        if alarm is not None:
            self.revision.bump()  # alarm_raised_at and the reason are shown in the states
        return Change(self.spec.key, tracked, transition, alarm)

    def observe(self, tracked: Tracked, verdict: Verdict, start: float, end: float) -> list[Change]:
        """One window's verdict on one machine; a failing one also explains a down one."""
        passed = verdict.passed
        transitions = tracked.machine.observe(
            passed, verdict.reason if passed is False else "", start, end
        )
        if not transitions and passed is not False:
            return []  # the common case: nothing changed
        changes = [self.settle(tracked, transition) for transition in transitions]
        if passed is False:
            changes.extend(self.explain(tracked, end, window=verdict.reasons))
        return changes

    def fail(self, tracked: Tracked, reason: str, at: float) -> list[Change]:
        """Immediate evidence of failure: down unless already down (then explained)."""
        transition = tracked.machine.fail(reason, at)
        changes = [] if transition is None else [self.settle(tracked, transition)]
        changes.extend(self.explain(tracked, at, fast=reason))
        return changes

    def explain(
        self, tracked: Tracked, at: float, window: tuple[str, ...] | None = None, fast: str = ""
    ) -> list[Change]:
        """Note new evidence against a machine that is down (a failing window's tests, or
        fast evidence); when its reason changes, the change (an alarm update)."""
        track = tracked.machine.track
        if track.state != "down":
            return []
        why = tracked.why
        if window is not None:
            why.window = window
        if fast:
            why.fast = fast
        reason = why.text()
        if not reason or reason == track.reason:
            return []
        track.reason = reason
        self.revision.bump()
        return [self.settle(tracked, Transition("down", "down", at, reason))]

    def release(self, tracked: Tracked, reason: str, at: float) -> list[Change]:
        """A machine whose evidence is gone (a plugin probe state removed): up at once."""
        track = tracked.machine.track
        if track.state == "up":
            return []
        previous = track.state
        track.state = "up"
        self.revision.bump()
        return [self.settle(tracked, Transition(previous, "up", at, reason))]

    def tick(self) -> list[Change]:
        """Expired hold-downs: down -> probation."""
        changes: list[Change] = []
        for tracked in self.all():
            transition = tracked.machine.tick()
            if transition is not None:
                changes.append(self.settle(tracked, transition))
        return changes

    # --- the route's state --------------------------------------------------

    def evaluate(self) -> None:
        """The route-level state and raw in-service flag (the enforced machines' summary)."""
        if self._evaluated_at == self.revision.value:
            return
        self._evaluated_at = self.revision.value
        down = probation = up = False
        for tracked in self.all():
            if tracked.enforced:
                machine_state = tracked.machine.track.state
                if machine_state == "down":
                    down = True
                    break
                if machine_state == "probation":
                    probation = True
                elif machine_state == "up":
                    up = True
        state: PathStateName = (
            "down" if down else "probation" if probation else "up" if up else "unknown"
        )
        self.state = state
        self.raw_in_service = not (self.spec.enforcement and state == "down")

    # --- restart ------------------------------------------------------------

    def restore(self, state: PathState) -> None:
        """Take over the machines a PathState read from KV shows."""
        self.revision.bump()
        self.recovery.held = state.recovery_held
        for lane in state.lanes:
            judged = lane.enforced and lane.protocol in REACHABILITY_PROTOCOLS
            if judged and not lane.probe and not lane.destination:
                key = Lane(lane.protocol, lane.traffic_class, lane.source)
                self.lanes[key] = self.new(
                    lane.protocol, lane.traffic_class, "reachability", True, track=_track_from(lane)
                )
        for status in state.probes:
            track = _track_from(status)
            name = status.name
            if status.kind == "evidence":
                self.evidence[name] = self.new(status.protocol, None, name, True, "evidence", track)
            elif status.kind == "plugin":
                self.plugins[name] = self.new(None, None, f"probe:{name}", True, "plugin", track)
            elif status.state != "unknown" or status.hold_down_multiplier:
                self.probes[name] = self.new(
                    status.protocol, None, f"probe:{name}", status.enforced, status.kind, track
                )
        self.evaluate()
