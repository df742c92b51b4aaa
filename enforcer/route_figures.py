"""The figures of one route and the lane states shown for them.

What the route shows between windows, apart from its machines: the latest
metrics of each aggregate lane, the shown state of each probe address and
per-destination lane, the router's probe counters, and the lane states
(`LaneState`) built from those and the lane machines. Every table is keyed by
the canonical `schemas.wire.Lane`.

Quiet windows (`enforcer.quiet`) only move figures; they are kept unfolded
until read (`fold`), and when the cached lane states were current before
them, those are updated in place rather than rebuilt.
"""

from collections.abc import Iterable

import msgspec

from enforcer.judge import Verdict
from enforcer.quality import route_quality
from enforcer.route_machines import RouteMachines
from enforcer.route_spec import RouteSpec
from enforcer.rules import enough_samples
from enforcer.state_machine import Revision
from schemas.wire import Lane, LaneState, LaneStats, PathState, PathStateName

#: Counters of a probe with an SLA, in the router's names; outcome counters first.
SLA_COUNTERS = (
    "success",
    "response-timeout",
    "failed-to-send",
    "exceeded-by-max-loss",
    "exceeded-by-max-latency",
    "exceeded-by-mean-latency",
    "exceeded-by-max-jitter",
)
#: The probe outcome each outcome counter counts.
_COUNTER_OF_OUTCOME = {
    "ok": "success",
    "timeout": "response-timeout",
    "send-failed": "failed-to-send",
}


_new_tuple = tuple.__new__


def lane_key(lane: LaneStats) -> Lane:
    """`lane.lane` for the hot path: the same `Lane`, made without NamedTuple's
    Python-level constructor (a third of the time, per lane of every window)."""
    return _new_tuple(
        Lane, (lane.protocol, lane.traffic_class, lane.source, lane.destination, lane.probe)
    )


def shown_lane(metrics: LaneStats, min_samples: int) -> LaneState:
    """The state of an aggregate lane shown but never judged: up once it has samples."""
    enough = enough_samples(metrics, min_samples)
    return LaneState(
        protocol=metrics.protocol,
        traffic_class=metrics.traffic_class,
        source=metrics.source,
        state="up" if enough else "unknown",
        meets_sla=enough,
        metrics=metrics,
        enforced=False,
    )


def _probe_lane_state(
    lane: LaneStats, state: PathStateName, reason: str, since: float, enforced: bool
) -> LaneState:
    return LaneState(
        protocol=lane.protocol,
        traffic_class=lane.traffic_class,
        source=lane.source,
        destination=lane.destination,
        probe=lane.probe,
        state=state,
        meets_sla=state == "up",
        reason=reason,
        since=since,
        metrics=lane,
        enforced=enforced,
    )


def _count_outcomes(counters: dict[str, int], lane: LaneStats) -> None:
    for outcome, hits in lane.outcomes.items():
        counter = _COUNTER_OF_OUTCOME.get(outcome)
        if counter is not None and hits:
            counters[counter] += hits


class RouteFigures:
    """Lane metrics, shown probe and destination lanes, probe counters, lane states."""

    def __init__(self, spec: RouteSpec, machines: RouteMachines, revision: Revision) -> None:
        self.spec = spec
        self.machines = machines
        self.revision = revision
        #: The latest metrics of each aggregate lane (destination and probe empty).
        self.lane_metrics: dict[Lane, LaneStats] = {}
        #: Probe addresses, shown with their own verdict.
        self.probe_lanes: dict[Lane, LaneState] = {}
        #: Per-destination lanes of real traffic, shown only.
        self.destination_lanes: dict[Lane, LaneState] = {}
        #: The router's counters of each probe with an SLA.
        self.counters: dict[str, dict[str, int]] = {}
        #: Bumped by every change of the figures.
        self.version = 0
        #: Quiet windows whose figures are not recorded yet.
        self._unfolded: list[list[LaneStats]] = []
        self._quality = (-1, 0.0)
        self._lane_states: tuple[tuple[int, int], list[LaneState]] | None = None
        #: Where each lane sits in the cached lane states (for in-place updates).
        self._slots: dict[Lane, int] = {}

    # --- a judged window ----------------------------------------------------

    def moved(self) -> None:
        """Some figure changed (a judged window)."""
        self.version += 1

    def show_destination(self, lane: LaneStats, end: float) -> None:
        """A per-destination lane of real traffic: shown, never judged."""
        key = lane_key(lane)
        seen = self.destination_lanes.get(key)
        shown: PathStateName = "up" if enough_samples(lane, self.spec.min_samples) else "unknown"
        self.destination_lanes[key] = LaneState(
            protocol=lane.protocol,
            traffic_class=lane.traffic_class,
            source=lane.source,
            destination=lane.destination,
            state=shown,
            since=seen.since if seen is not None and seen.state == shown else end,
            metrics=lane,
            enforced=False,
        )

    def show_unjudged_probe(self, lane: LaneStats, end: float) -> None:
        """A probe lane of a route with probe-type disabled: shown, never judged."""
        key = lane_key(lane)
        previous = self.probe_lanes.get(key)
        since = previous.since if previous is not None else end
        reason = "probe-type disabled: not judged"
        self.probe_lanes[key] = _probe_lane_state(lane, "unknown", reason, since, False)

    def show_probe(self, lane: LaneStats, verdict: Verdict, end: float, enforced: bool) -> None:
        """The shown state of one probe address after its verdict."""
        passed = verdict.passed
        state: PathStateName = "unknown" if passed is None else "up" if passed else "down"
        key = lane_key(lane)
        previous = self.probe_lanes.get(key)
        if previous is None or previous.state != state:
            self.revision.bump()  # a shown state changed, not only figures
        since = previous.since if previous is not None and previous.state == state else end
        self.probe_lanes[key] = _probe_lane_state(lane, state, verdict.reason, since, enforced)

    def count_probe(self, lane: LaneStats, verdict: Verdict | None = None) -> None:
        """Add a probe lane's outcomes (and the SLA rules its verdict failed) to the
        probe's counters."""
        counters = self.sla_counters(lane.probe)
        _count_outcomes(counters, lane)
        if verdict is not None:
            for rule in verdict.failed:
                counters[rule.counter] += 1

    def sla_counters(self, name: str) -> dict[str, int]:
        counters = self.counters.get(name)
        if counters is None:
            counters = self.counters[name] = dict.fromkeys(SLA_COUNTERS, 0)
        elif len(counters) != len(SLA_COUNTERS):
            for counter in SLA_COUNTERS:
                counters.setdefault(counter, 0)
        return counters

    # --- quiet windows ------------------------------------------------------

    def take_quiet(self, lanes: list[LaneStats]) -> None:
        """Keep a quiet window's lanes unfolded (see `fold`) until they are read."""
        self._unfolded.append(lanes)
        self.version += 1

    def fold(self) -> None:
        """Record the figures of the quiet windows taken since they were last read.

        Probe counters add up every window; lane metrics and probe addresses
        (all passing and already shown up, so only their metrics move) take
        the newest window holding them, read newest first.
        """
        unfolded = self._unfolded
        if not unfolded:
            return
        self._unfolded = []
        cached = self._lane_states
        states: list[LaneState] | None = None
        if cached is not None and cached[0] == (self.revision.value, self.version - len(unfolded)):
            states = cached[1]
        complete = True
        if len(unfolded) == 1:
            # one window: its lanes in reverse so the first of a repeated key wins
            complete = self._fold_lanes(reversed(unfolded[0]), states, None)
        else:
            set_keys: set[Lane] = set()
            for lanes in reversed(unfolded):
                complete = self._fold_lanes(lanes, states, set_keys) and complete
        if states is not None and complete:
            self._lane_states = ((self.revision.value, self.version), states)
        else:
            self._lane_states = None

    def _fold_lanes(
        self, lanes: Iterable[LaneStats], states: list[LaneState] | None, set_keys: set[Lane] | None
    ) -> bool:
        """Record one quiet window's figures (`set_keys`: lanes set by a newer window);
        False when a lane has no place in `states` (then they must be rebuilt). This runs
        for every lane of every quiet window: `lane_key` and `_count_outcomes` inline."""
        replace = msgspec.structs.replace
        slots, judged, counter_of = self._slots, self.machines.lanes, _COUNTER_OF_OUTCOME
        lane_metrics, probe_lanes = self.lane_metrics, self.probe_lanes
        min_samples = self.spec.min_samples
        complete = True
        counters_of, counters = "", {}
        for lane in lanes:
            probe = lane.probe
            key = _new_tuple(
                Lane, (lane.protocol, lane.traffic_class, lane.source, lane.destination, probe)
            )
            if probe:
                if probe != counters_of:
                    counters_of, counters = probe, self.sla_counters(probe)
                for outcome, hits in lane.outcomes.items():
                    counter = counter_of.get(outcome)
                    if counter is not None and hits:
                        counters[counter] += hits
            if set_keys is not None:
                if key in set_keys:
                    continue
                set_keys.add(key)
            if probe:
                shown = probe_lanes[key] = replace(probe_lanes[key], metrics=lane)
            else:
                lane_metrics[key] = lane
            if states is None:
                continue
            slot = slots.get(key)
            if slot is None:
                complete = False
            elif probe:
                states[slot] = shown
            elif key in judged:
                states[slot] = replace(states[slot], metrics=lane)
            else:
                states[slot] = shown_lane(lane, min_samples)
        return complete

    # --- what is shown ------------------------------------------------------

    @property
    def quality(self) -> float:
        """The route's quality score, computed when asked for (once per figures version)."""
        version, quality = self._quality
        if version != self.version:
            self.fold()
            quality = route_quality(self.lane_metrics.values())
            self._quality = (self.version, quality)
        return quality

    def lane_states(self) -> list[LaneState]:
        """Every lane's state; rebuilt only when a machine or the figures changed."""
        self.fold()
        cached = self._lane_states
        stamp = (self.revision.value, self.version)
        if cached is None or cached[0] != stamp:
            cached = self._lane_states = (stamp, self._build_lane_states())
        return list(cached[1])

    def _build_lane_states(self) -> list[LaneState]:
        states: list[LaneState] = []
        slots: dict[Lane, int] = {}
        min_samples = self.spec.min_samples
        judged = self.machines.lanes
        for key, metrics in self.lane_metrics.items():
            if key not in judged:
                slots[key] = len(states)
                states.append(shown_lane(metrics, min_samples))
        for key, tracked in judged.items():
            track = tracked.machine.track
            slots[key] = len(states)
            states.append(
                LaneState(
                    protocol=key.protocol,
                    traffic_class=key.traffic_class,
                    source=key.source,
                    state=track.state,
                    meets_sla=track.meets_sla and track.state == "up",
                    reason=track.reason,
                    since=track.since,
                    metrics=self.lane_metrics.get(key),
                    enforced=True,
                    hold_down_until=track.hold_down_until,
                    hold_down_multiplier=track.multiplier,
                    healthy_since=track.healthy_since,
                    alarm_raised_at=track.alarm_raised_at,
                )
            )
        for key, shown in self.probe_lanes.items():
            slots[key] = len(states)
            states.append(shown)
        states.extend(self.destination_lanes.values())
        self._slots = slots
        return states

    # --- restart ------------------------------------------------------------

    def restore(self, state: PathState) -> None:
        """Take over the figures a PathState read from KV shows."""
        self.fold()
        self.version += 1
        for lane in state.lanes:
            key = Lane(lane.protocol, lane.traffic_class, lane.source, lane.destination, lane.probe)
            if lane.probe:
                self.probe_lanes[key] = lane
            elif lane.destination:
                self.destination_lanes[key] = lane
            elif lane.metrics is not None:
                self.lane_metrics[key] = lane.metrics
        for status in state.probes:
            if status.counters:
                self.counters[status.name] = dict(status.counters)
