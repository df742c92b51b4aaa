"""Judgement of one service route: its lane, probe and evidence machines.

Aggregate lanes (destination and probe empty) of tcp / udp / tls / http are
judged against the reachability profile; each ICMP / HTTP probe against its
SLA on every probe address (any address failing takes the probe down);
plugin probes follow the state set through the API; link and neighbour
evidence takes the route down at once. The route is down when any enforced
machine is down.
"""

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Literal, NamedTuple

import msgspec

from enforcer.judge import NOT_JUDGED, PASSED, Judge, Verdict, combine
from enforcer.quality import route_quality
from enforcer.quiet_types import (
    REACHABILITY,
    SHOWN,
    SLA,
    LayoutSlot,
    QuietDecoder,
    quiet_decoder,
)
from enforcer.reasons import Explanation, consecutive_failures_reason
from enforcer.route_spec import REACHABILITY_PROTOCOLS, RouteSpec
from enforcer.rules import enough_samples
from enforcer.state_machine import Clock, PathMachine, Revision, TrackState, Transition
from schemas.wire import (
    FastEvidence,
    Lane,
    LaneState,
    LaneStats,
    PathState,
    PathStateName,
    ProbeState,
    ProbeStatus,
    Protocol,
    TrafficClass,
    WindowStats,
)

AggregateKey = tuple[str, str, str]

_NO_HOLD = float("inf")
ProbeLaneKey = tuple[str, str, str, str]

#: Every distinct reachability judge in use, shared by the routes that have it.
_SHARED_JUDGES: dict[Judge, Judge] = {}

#: Causes of route-level evidence machines, with the protocol shown for them.
EVIDENCE_CAUSES = ("link", "neighbour", "consecutive-failures")

#: Counters of a probe with an SLA, in the router's names; outcome counters first.
_OUTCOME_COUNTERS = (
    ("success", "ok"),
    ("response-timeout", "timeout"),
    ("failed-to-send", "send-failed"),
)
_COUNTER_OF_OUTCOME = {outcome: counter for counter, outcome in _OUTCOME_COUNTERS}
SLA_COUNTERS = (
    "success",
    "response-timeout",
    "failed-to-send",
    "exceeded-by-max-loss",
    "exceeded-by-max-latency",
    "exceeded-by-mean-latency",
    "exceeded-by-max-jitter",
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
    #: The reachability judge of an aggregate lane, set when first judged.
    judge: Judge | None = None
    #: Why the machine is down (its reason while down), in parts.
    why: Explanation = field(default_factory=Explanation)


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


_UNSEEN = object()


@dataclass(slots=True)
class _QuietLayout:
    """A window's lane layout, each position with the limits it is checked against.

    `decoder` compiles `_quiet_window`'s per-lane check, for windows laid out
    exactly like the one the layout was noted from, into a msgspec decoder (see
    `enforcer.quiet_types`): windows that arrive as JSON are checked while
    they are decoded.
    """

    slots: tuple[LayoutSlot, ...]
    #: Quiet decoders of this layout by min-samples, built when first asked for.
    decoders: dict[int, QuietDecoder] = field(default_factory=dict)

    def decoder(self, min_samples: int) -> QuietDecoder:
        decoder = self.decoders.get(min_samples)
        if decoder is None:
            decoder = self.decoders[min_samples] = quiet_decoder(self.slots, min_samples)
        return decoder


#: Every distinct quiet layout in use, shared by the routes that have it (bounded).
_SHARED_LAYOUTS: dict[tuple[LayoutSlot, ...], _QuietLayout] = {}
_SHARED_LAYOUTS_MAX = 4096


def _quiet_layout(
    lanes: list[LaneStats],
    known: "dict[AggregateKey, Judge | None]",
    probes: dict[str, Judge],
    probe_lanes_up: frozenset[ProbeLaneKey],
    previous: _QuietLayout | None = None,
) -> _QuietLayout | None:
    """The layout of a window that would pass `_quiet_window`, None when it could not;
    `previous` (the route's last layout) when it is the same."""
    slots: list[LayoutSlot] = []
    for lane in lanes:
        where = Lane(lane.protocol, lane.traffic_class, lane.source, lane.destination, lane.probe)
        if lane.probe:
            sla = probes.get(lane.probe)
            key = (lane.probe, lane.protocol, lane.traffic_class, lane.destination)
            if sla is None or key not in probe_lanes_up:
                return None
            slots.append((where, SLA, sla.limits))
            continue
        if lane.destination:
            return None
        found = known.get((lane.protocol, lane.traffic_class, lane.source), _UNSEEN)
        if found is _UNSEEN:
            return None
        if found is None:
            slots.append((where, SHOWN, ()))
            continue
        judge: Judge = found  # type: ignore[assignment]
        slots.append((where, REACHABILITY, judge.limits))
    layout_slots = tuple(slots)
    if previous is not None and previous.slots == layout_slots:
        return previous
    # routes of one config mostly share layouts: one object each, warm in the cache
    shared = _SHARED_LAYOUTS.get(layout_slots)
    if shared is None:
        if len(_SHARED_LAYOUTS) >= _SHARED_LAYOUTS_MAX:
            _SHARED_LAYOUTS.clear()  # layouts churn (lanes come and go): start over
        shared = _SHARED_LAYOUTS[layout_slots] = _QuietLayout(layout_slots)
    return shared


@dataclass
class _Quiet:
    """What a window must look like to change no machine of a route.

    Noted after a fully judged window when every machine is either settled up
    (observing a pass or an unjudged window again changes nothing) or down in
    a hold-down that has not expired (observing anything changes nothing
    until `until`). While no machine changed since (`revision`), a window
    whose lanes are all known and all pass their pre-checks changes nothing
    but the metrics and the probe counters, whatever its figures.
    """

    revision: int
    #: The earliest hold-down end of a down machine (inf when none is down).
    until: float
    #: Aggregate lanes: their limits, or None when not judged (shown only, or held down).
    lanes: dict[AggregateKey, Judge | None]
    #: Probes with an SLA: their judge.
    probes: dict[str, Judge]
    #: Probe addresses shown up: (probe, protocol, class, destination).
    probe_lanes_up: frozenset[ProbeLaneKey]
    #: The layout of the window it was noted after, for the whole-window check.
    layout: _QuietLayout | None = None


class RouteSummary(NamedTuple):
    """Route-level figures derived from every machine of a route."""

    meets_sla: bool
    reason: str
    hold_down_until: float | None
    multiplier: int


def _shown_lane(metrics: LaneStats, min_samples: int) -> LaneState:
    """The state of an aggregate lane shown but never judged: up once it has samples."""
    enough = metrics.count >= min_samples
    return LaneState(
        protocol=metrics.protocol,
        traffic_class=metrics.traffic_class,
        source=metrics.source,
        state="up" if enough else "unknown",
        meets_sla=enough,
        metrics=metrics,
        enforced=False,
    )


def _track_from(item: LaneState | ProbeStatus) -> TrackState:
    return TrackState(
        state=item.state,
        since=item.since,
        reason=item.reason,
        hold_down_until=item.hold_down_until,
        multiplier=item.hold_down_multiplier,
        healthy_since=item.healthy_since,
        meets_sla=getattr(item, "meets_sla", item.state == "up"),
        alarm_raised_at=item.alarm_raised_at,
    )


class RouteTracker:
    """All machines of one route plus what the route shows between windows."""

    def __init__(self, spec: RouteSpec, clock: Clock) -> None:
        self.spec = spec
        self.clock = clock
        self.lanes: dict[AggregateKey, Tracked] = {}
        self.lane_metrics: dict[AggregateKey, LaneStats] = {}
        self.probes: dict[str, Tracked] = {}
        self.probe_lanes: dict[ProbeLaneKey, LaneState] = {}
        self.destination_lanes: dict[ProbeLaneKey, LaneState] = {}
        self.counters: dict[str, dict[str, int]] = {}
        self.plugins: dict[str, Tracked] = {}
        self.plugin_states: dict[str, ProbeState] = {}
        self.evidence: dict[str, Tracked] = {}
        self.evidence_down: dict[str, str] = {}
        self.last_window_end: float | None = None
        self.window_stale = False
        self.stale = False
        self.best_effort = False
        self.state: PathStateName = "unknown"
        self.since = 0.0
        self.raw_in_service = True
        self._quality = (-1, 0.0)
        self._reachability_judges: dict[tuple[str, str], Judge] = {}
        self._sla_judges: dict[str, Judge] = {}
        #: Bumped by every change of a machine or of the lane data of this route.
        self.revision = Revision()
        #: Bumped by every change of the lane data (metrics, probe counters) of this route.
        self.data_version = 0
        self._quiet: _Quiet | None = None
        #: A judged window's lanes and the revision after it, to note quiet from later.
        self._note_later: tuple[list[LaneStats], int] | None = None
        #: The layout noted after the last fully judged window.
        self._last_layout: _QuietLayout | None = None
        #: Whether the last window taken was quiet (changed nothing but figures).
        self.quiet_taken = False
        #: Quiet windows whose figures are not recorded yet: (lanes, window end).
        self._unfolded: list[tuple[list[LaneStats], float]] = []
        self._evaluated_at = -1
        self._summary: tuple[int, RouteSummary] | None = None
        self._lane_states: tuple[tuple[int, int], list[LaneState]] | None = None
        #: Where each lane sits in the cached lane states: judged lanes, shown-only
        #: aggregate lanes and probe addresses (so a quiet window updates them in place).
        self._judged_slots: dict[AggregateKey, int] = {}
        self._shown_slots: dict[AggregateKey, int] = {}
        self._probe_slots: dict[ProbeLaneKey, int] = {}
        #: The last PathState: (revision, state, best-effort, stale, since), it, data version.
        self._snapshot: tuple[tuple[int, str, bool, bool, float], PathState, int] | None = None

    # --- machines ---------------------------------------------------------

    def _new(
        self,
        protocol: Protocol | None,
        traffic_class: TrafficClass | None,
        cause: str,
        enforced: bool,
        kind: str = "",
        track: TrackState | None = None,
    ) -> Tracked:
        self.revision.bump()
        return Tracked(
            PathMachine(self.spec.hold_down, self.clock, track, self.revision),
            protocol,
            traffic_class,
            cause,
            enforced,
            kind,
        )

    def all_tracked(self) -> Iterator[Tracked]:
        return chain(
            self.lanes.values(),
            self.probes.values(),
            self.plugins.values(),
            self.evidence.values(),
        )

    def _changes(self, tracked: Tracked, transitions: list[Transition]) -> list[Change]:
        return [self._settle(tracked, transition) for transition in transitions]

    def _change(self, tracked: Tracked, transition: Transition | None) -> list[Change]:
        return [] if transition is None else [self._settle(tracked, transition)]

    def _settle(self, tracked: Tracked, transition: Transition) -> Change:
        """A transition with its alarm: raised at the first down of an enforced machine,
        updated (new reason) at a later one, cleared when it is up again."""
        if transition.previous != transition.state:
            tracked.why.clear()
        track = tracked.machine.track
        raised_at = track.alarm_raised_at
        alarm: AlarmNotice | None = None
        if not tracked.enforced:
            pass
        elif transition.state == "down" and raised_at is None:
            track.alarm_raised_at = transition.at
            alarm = AlarmNotice("raised", transition.at, None, transition.reason, transition.at)
        elif transition.state == "down" and raised_at is not None:
            alarm = AlarmNotice("updated", raised_at, None, transition.reason, transition.at)
        elif transition.state == "up" and raised_at is not None:
            track.alarm_raised_at = None
            at = transition.at
            alarm = AlarmNotice("cleared", raised_at, at, transition.reason, at)
        if alarm is not None:
            self.revision.bump()  # alarm_raised_at and the reason are shown in the states
        return Change(self.spec.key, tracked, transition, alarm)

    def _explain(
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
        return [self._settle(tracked, Transition("down", "down", at, reason))]

    # --- inputs -------------------------------------------------------------

    def _limits(self, protocol: Protocol, traffic_class: TrafficClass) -> Judge:
        key = (protocol, traffic_class)
        judge = self._reachability_judges.get(key)
        if judge is None:
            judge = Judge.reachability(self.spec.thresholds_for(protocol, traffic_class))
            # one shared object per distinct limits: fewer long-lived objects for the GC
            judge = _SHARED_JUDGES.setdefault(judge, judge)
            self._reachability_judges[key] = judge
        return judge

    def _judge_reachability(self, lane: LaneStats, judge: Judge | None = None) -> Verdict:
        if judge is None:
            judge = self._limits(lane.protocol, lane.traffic_class)
        return judge.verdict(lane, self.spec.min_samples)

    def _open_quiet(self, end: float) -> "_Quiet | None":
        """The quiet note if it still holds for a window ending at `end` (no machine
        changed since, no hold-down over by then or by now); else None."""
        quiet = self._current_quiet()
        if quiet is None or quiet.revision != self.revision.value:
            return None
        if quiet.until != _NO_HOLD and max(end, self.clock()) >= quiet.until:
            return None
        return quiet

    def _take_figures(self, lanes: list[LaneStats], end: float) -> None:
        """Keep a quiet window's lanes unfolded (see `_fold`) until they are read."""
        self._unfolded.append((lanes, end))
        self.data_version += 1

    def quiet_decoder(self) -> QuietDecoder | None:
        """A decoder that accepts the next window only if it is quiet (see
        `enforcer.quiet_types`); None when the next window must be judged anyway."""
        quiet = self._open_quiet(-math.inf)
        if quiet is None or quiet.layout is None:
            return None
        return quiet.layout.decoder(self.spec.min_samples)

    def take_decoded_quiet(self, window: WindowStats) -> bool:
        """Take a window that `quiet_decoder`'s decoder accepted: figures only. False
        (nothing taken) when it ends past a hold-down; then judge it with `on_window`."""
        end = window.window_end
        if self._open_quiet(end) is None:
            return False
        if self.last_window_end is None or end > self.last_window_end:
            self.last_window_end = end
        self._take_figures(window.lanes, end)
        self.quiet_taken = True
        return True

    def on_window(self, window: WindowStats) -> list[Change]:
        """Judge every lane of a closed window; returns the transitions it caused."""
        spec = self.spec
        start, end = window.window_start, window.window_end
        if self.last_window_end is None or end > self.last_window_end:
            self.last_window_end = end
        self.quiet_taken = self._quiet_window(window.lanes, end)
        if self.quiet_taken:
            return []
        self._fold()
        changes: list[Change] = []
        probe_verdicts: dict[str, list[Verdict]] = {}
        probe_protocols: dict[str, Protocol] = {}
        min_samples = spec.min_samples
        enabled = spec.enabled
        passive_only = spec.probe_type == "disabled"
        lane_metrics = self.lane_metrics
        tracked_lanes = self.lanes
        for lane in window.lanes:
            if lane.probe and passive_only:
                self._show_probe_lane(lane, end)
                continue
            if lane.probe:
                verdict = self._judge_probe_lane(lane, end)
                verdicts = probe_verdicts.get(lane.probe)
                if verdicts is None:
                    probe_verdicts[lane.probe] = [verdict]
                    probe_protocols[lane.probe] = lane.protocol
                else:
                    verdicts.append(verdict)
                continue
            if lane.destination:
                key4 = (lane.source, lane.protocol, lane.traffic_class, lane.destination)
                seen = self.destination_lanes.get(key4)
                shown: PathStateName = "up" if lane.count >= min_samples else "unknown"
                self.destination_lanes[key4] = LaneState(
                    protocol=lane.protocol,
                    traffic_class=lane.traffic_class,
                    source=lane.source,
                    destination=lane.destination,
                    state=shown,
                    since=seen.since if seen is not None and seen.state == shown else end,
                    metrics=lane,
                    enforced=False,
                )
                continue
            key = (lane.protocol, lane.traffic_class, lane.source)
            lane_metrics[key] = lane
            if (
                not enabled
                or lane.protocol not in REACHABILITY_PROTOCOLS
                or (passive_only and lane.source != "passive")
            ):
                continue
            tracked = tracked_lanes.get(key)
            if tracked is None:
                tracked = self._new(lane.protocol, lane.traffic_class, "reachability", True)
                tracked_lanes[key] = tracked
            judge = tracked.judge
            if judge is None:
                judge = tracked.judge = self._limits(lane.protocol, lane.traffic_class)
            verdict = judge.verdict(lane, min_samples)
            reason = verdict.reason if verdict.reasons else ""
            transitions = tracked.machine.observe(verdict.passed, reason, start, end)
            if transitions:
                changes.extend(self._changes(tracked, transitions))
            if verdict.passed is False:
                changes.extend(self._explain(tracked, end, verdict.reasons))
        if enabled:
            for name, verdicts in probe_verdicts.items():
                tracked = self.probes.get(name)
                if tracked is None:
                    probe_spec = spec.probes.get(name)
                    enforced = probe_spec is not None and probe_spec.enforced
                    kind = probe_spec.kind if probe_spec is not None else probe_protocols[name]
                    tracked = self._new(
                        probe_protocols[name], None, f"probe:{name}", enforced, kind
                    )
                    self.probes[name] = tracked
                verdict = combine(verdicts)
                reason = verdict.reason
                transitions = tracked.machine.observe(verdict.passed, reason, start, end)
                if transitions:
                    changes.extend(self._changes(tracked, transitions))
                if verdict.passed is False:
                    changes.extend(self._explain(tracked, end, verdict.reasons))
            for cause, tracked in self.evidence.items():
                reason = self.evidence_down.get(cause, "")
                changes.extend(
                    self._changes(tracked, tracked.machine.observe(not reason, reason, start, end))
                )
            for name, tracked in self.plugins.items():
                reason = self._plugin_down_reason(name)
                changes.extend(
                    self._changes(tracked, tracked.machine.observe(not reason, reason, start, end))
                )
        self.data_version += 1
        if any(change.transition.state == "down" for change in changes):
            # a route just taken down: noted when its next window comes, so the close
            # where many routes fail at once pays for their outputs but not for this
            self._quiet = None
            self._note_later = (window.lanes, self.revision.value)
        else:
            self._note_quiet(window.lanes)
        return changes

    def _current_quiet(self) -> "_Quiet | None":
        """The quiet note, taken now from the last judged window if it was put off
        and no machine changed since (the note would be the same as then)."""
        later = self._note_later
        if later is not None:
            self._note_later = None
            lanes, revision = later
            if revision == self.revision.value:
                self._note_quiet(lanes)
        return self._quiet

    # --- quiet windows: nothing to change but metrics ---------------------------

    def _note_quiet(self, window_lanes: list[LaneStats]) -> None:
        """After a judged window: note whether the next windows may skip the machines."""
        self._quiet = None
        spec = self.spec
        if (
            self.evidence
            or self.plugins
            or self.destination_lanes
            or not spec.enabled
            or spec.probe_type == "disabled"
        ):
            return
        until = _NO_HOLD
        lanes: dict[AggregateKey, Judge | None] = {}
        for key in self.lane_metrics:
            tracked = self.lanes.get(key)
            if tracked is None:
                if key[0] in REACHABILITY_PROTOCOLS:
                    return
                lanes[key] = None  # shown, never judged
                continue
            held = tracked.machine.quiet_until()
            if held is None:
                return
            # a lane held down is checked too: a failing window may change its reason
            lanes[key] = tracked.judge or self._limits(key[0], key[1])  # type: ignore[arg-type]
            until = min(until, held)
        probes: dict[str, Judge] = {}
        for name, tracked in self.probes.items():
            probe_spec = spec.probes.get(name)
            limits = self._sla_judges.get(name)
            held = tracked.machine.quiet_until()
            if probe_spec is None or probe_spec.sla is None or limits is None or held is None:
                return
            until = min(until, held)
            probes[name] = limits
        probe_lanes_up = frozenset(
            key for key, shown in self.probe_lanes.items() if shown.state == "up"
        )
        previous = self._last_layout
        layout = _quiet_layout(window_lanes, lanes, probes, probe_lanes_up, previous)
        self._last_layout = layout
        self._quiet = _Quiet(self.revision.value, until, lanes, probes, probe_lanes_up, layout)

    def _quiet_window(self, lanes: list[LaneStats], end: float) -> bool:
        """Take a window that changes no machine and no shown state: figures only.

        True when no machine changed since the last judged window and every
        lane is known and passes its pre-check (or has too few samples, or
        belongs to a machine held down): the full judgement would then change
        nothing either. Every probe address must pass and already be shown up.
        The lanes are kept unfolded (see `_fold`) until their figures are read.
        """
        quiet = self._open_quiet(end)
        if quiet is None:
            return False
        min_samples = self.spec.min_samples
        known = quiet.lanes
        probes = quiet.probes
        probe_lanes_up = quiet.probe_lanes_up
        for lane in lanes:
            probe = lane.probe
            if probe:
                sla = probes.get(probe)
                if (
                    sla is None
                    or not enough_samples(lane, min_samples)
                    or sla.check(lane)
                    or (probe, lane.protocol, lane.traffic_class, lane.destination)
                    not in probe_lanes_up
                ):
                    return False
                continue
            if lane.destination:
                return False
            limits = known.get((lane.protocol, lane.traffic_class, lane.source), _UNSEEN)
            if limits is None:
                continue
            if limits is _UNSEEN:
                return False
            if enough_samples(lane, min_samples) and limits.check(lane):  # type: ignore[attr-defined]
                return False
        self._take_figures(lanes, end)
        return True

    def _fold(self) -> None:
        """Record the figures of the quiet windows taken since they were last read.

        Probe counters add up every window; lane metrics and probe addresses
        (all passing and already shown up, so only their metrics move) take
        the newest window holding them, read newest first. When the cached lane
        states were current before these windows, they are updated in place
        (only the metrics of each lane replaced) instead of rebuilt later.
        """
        unfolded = self._unfolded
        if not unfolded:
            return
        self._unfolded = []
        cached = self._lane_states
        states: list[LaneState] | None = None
        if cached is not None and cached[0] == (
            self.revision.value,
            self.data_version - len(unfolded),
        ):
            states = cached[1]
        if len(unfolded) == 1:
            # one window: its lanes in reverse so the first of a repeated key wins
            complete = self._fold_lanes(reversed(unfolded[0][0]), states, None)
        else:
            set_keys: set[tuple[str, ...]] = set()
            complete = True
            for lanes, _ in reversed(unfolded):
                complete = self._fold_lanes(lanes, states, set_keys) and complete
        if states is not None and complete:
            self._lane_states = ((self.revision.value, self.data_version), states)
        else:
            self._lane_states = None

    def _fold_lanes(
        self,
        lanes: Iterable[LaneStats],
        states: list[LaneState] | None,
        set_keys: set[tuple[str, ...]] | None,
    ) -> bool:
        """Record one quiet window's figures (`set_keys`: lanes set by a newer window);
        False when a lane has no place in `states` (then they must be rebuilt)."""
        lane_metrics = self.lane_metrics
        probe_lanes = self.probe_lanes
        judged_slots = self._judged_slots
        shown_slots = self._shown_slots
        probe_slots = self._probe_slots
        min_samples = self.spec.min_samples
        replace = msgspec.structs.replace
        complete = True
        counters_of = ""
        counters: dict[str, int] = {}
        for lane in lanes:
            probe = lane.probe
            if probe:
                if probe != counters_of:
                    counters_of, counters = probe, self._sla_counters(probe)
                for outcome, hits in lane.outcomes.items():
                    counter = _COUNTER_OF_OUTCOME.get(outcome)
                    if counter is not None and hits:
                        counters[counter] += hits
                probe_key = (probe, lane.protocol, lane.traffic_class, lane.destination)
                if set_keys is not None:
                    if probe_key in set_keys:
                        continue
                    set_keys.add(probe_key)
                shown = probe_lanes[probe_key] = replace(
                    probe_lanes[probe_key], source=lane.source, metrics=lane
                )
                if states is not None:
                    slot = probe_slots.get(probe_key)
                    if slot is None:
                        complete = False
                    else:
                        states[slot] = shown
                continue
            key = (lane.protocol, lane.traffic_class, lane.source)
            if set_keys is not None:
                if key in set_keys:
                    continue
                set_keys.add(key)
            lane_metrics[key] = lane
            if states is None:
                continue
            slot = judged_slots.get(key)
            if slot is not None:
                states[slot] = replace(states[slot], metrics=lane)
                continue
            slot = shown_slots.get(key)
            if slot is None:
                complete = False
            else:
                states[slot] = _shown_lane(lane, min_samples)
        return complete

    def _sla_counters(self, name: str) -> dict[str, int]:
        counters = self.counters.get(name)
        if counters is None:
            counters = dict.fromkeys(SLA_COUNTERS, 0)
            self.counters[name] = counters
        elif len(counters) != len(SLA_COUNTERS):
            for counter in SLA_COUNTERS:
                counters.setdefault(counter, 0)
        return counters

    def _show_probe_lane(self, lane: LaneStats, end: float) -> None:
        """A probe lane of a route with probe-type disabled: shown, never judged."""
        key = (lane.probe, lane.protocol, lane.traffic_class, lane.destination)
        previous = self.probe_lanes.get(key)
        self.probe_lanes[key] = LaneState(
            protocol=lane.protocol,
            traffic_class=lane.traffic_class,
            source=lane.source,
            destination=lane.destination,
            probe=lane.probe,
            state="unknown",
            reason="probe-type disabled: not judged",
            since=previous.since if previous is not None else end,
            metrics=lane,
            enforced=False,
        )

    def _judge_probe_lane(self, lane: LaneStats, end: float) -> Verdict:
        spec = self.spec
        probe_spec = spec.probes.get(lane.probe)
        enforced = probe_spec is not None and probe_spec.enforced
        if probe_spec is not None and probe_spec.sla is not None:
            judge = self._sla_judges.get(lane.probe)
            if judge is None:
                judge = self._sla_judges[lane.probe] = Judge.sla(probe_spec.sla)
            counters = self._sla_counters(lane.probe)
            outcomes = lane.outcomes
            for counter, outcome in _OUTCOME_COUNTERS:
                hits = outcomes.get(outcome)
                if hits:
                    counters[counter] += hits
            verdict = judge.verdict(lane, spec.min_samples)
            for rule in verdict.failed:
                counters[rule.counter] += 1
        elif lane.protocol in REACHABILITY_PROTOCOLS:
            verdict = self._judge_reachability(lane)
        else:
            verdict = PASSED if enough_samples(lane, spec.min_samples) else NOT_JUDGED
        self._record_probe_lane(lane, verdict, end, enforced)
        return verdict

    def _record_probe_lane(
        self, lane: LaneStats, verdict: Verdict, end: float, enforced: bool
    ) -> None:
        """The shown state of one probe address after its verdict."""
        passed = verdict.passed
        state: PathStateName = "unknown" if passed is None else "up" if passed else "down"
        key = (lane.probe, lane.protocol, lane.traffic_class, lane.destination)
        previous = self.probe_lanes.get(key)
        if previous is None or previous.state != state:
            self.revision.bump()  # a shown state changed, not only figures
        self.probe_lanes[key] = LaneState(
            protocol=lane.protocol,
            traffic_class=lane.traffic_class,
            source=lane.source,
            destination=lane.destination,
            probe=lane.probe,
            state=state,
            meets_sla=passed is True,
            reason=verdict.reason,
            since=previous.since if previous is not None and previous.state == state else end,
            metrics=lane,
            enforced=enforced,
        )

    def on_fast(self, evidence: FastEvidence) -> list[Change]:
        """Act on early evidence at once."""
        if not self.spec.enabled:
            return []
        where = "/".join(part for part in (evidence.node, evidence.interface) if part)
        detail = f" ({evidence.detail})" if evidence.detail else ""
        kind = evidence.kind
        if kind in ("link-up", "neighbour-resolved"):
            self.evidence_down.pop("link" if kind == "link-up" else "neighbour", None)
            return []
        if kind == "link-down":
            return self._evidence(
                "link", f"link down on {where or 'next hop'}{detail}", evidence.ts
            )
        if kind == "neighbour-unresolved":
            gateway = evidence.gateway or "gateway"
            return self._evidence(
                "neighbour",
                f"neighbour {gateway} unresolved on {where or 'next hop'}{detail}",
                evidence.ts,
            )
        protocol, traffic_class = evidence.protocol, evidence.traffic_class
        reason = consecutive_failures_reason(evidence)
        targets: list[Tracked] = []
        passive_only = self.spec.probe_type == "disabled"
        source = evidence.source or ("passive" if passive_only else "probe")
        if passive_only and (
            source != "passive" or (protocol is not None and protocol not in REACHABILITY_PROTOCOLS)
        ):
            return []  # probe evidence on a route judged on real traffic only
        if protocol in REACHABILITY_PROTOCOLS and traffic_class is not None:
            key = (protocol, traffic_class, source)
            tracked = self.lanes.get(key)
            if tracked is None:
                tracked = self._new(protocol, traffic_class, "reachability", True)
                self.lanes[key] = tracked
            targets.append(tracked)
        elif protocol is not None:
            targets.extend(t for t in self.probes.values() if t.enforced and t.kind == protocol)
            if not targets:
                targets.extend(
                    self._ensure_probe(p.name, p.kind)
                    for p in self.spec.probes.values()
                    if p.enforced and p.kind == protocol
                )
        if not targets:
            return self._evidence("consecutive-failures", reason, evidence.ts, latch=False)
        changes: list[Change] = []
        for tracked in targets:
            changes.extend(self._change(tracked, tracked.machine.fail(reason, evidence.ts)))
            changes.extend(self._explain(tracked, evidence.ts, fast=reason))
        return changes

    def _ensure_probe(self, name: str, kind: str) -> Tracked:
        tracked = self.probes.get(name)
        if tracked is None:
            protocol: Protocol | None = kind if kind in ("icmp", "http") else None  # type: ignore[assignment]
            tracked = self._new(protocol, None, f"probe:{name}", True, kind)
            self.probes[name] = tracked
        return tracked

    def _evidence(self, cause: str, reason: str, at: float, latch: bool = True) -> list[Change]:
        tracked = self.evidence.get(cause)
        if tracked is None:
            protocol: Protocol | None = "link" if cause in ("link", "neighbour") else None
            tracked = self._new(protocol, None, cause, True, "evidence")
            self.evidence[cause] = tracked
        if latch:
            self.evidence_down[cause] = reason
        return self._change(tracked, tracked.machine.fail(reason, at))

    # --- plugin probe state --------------------------------------------------

    def _plugin_down_reason(self, name: str) -> str:
        for state in self.plugin_states.values():
            if state.probe == name and state.state == "down":
                return f"probe {name} reported down" + (f": {state.reason}" if state.reason else "")
        return ""

    def set_plugin_state(self, key: str, state: ProbeState | None, now: float) -> list[Change]:
        """Probe state set (or deleted, or expired: None) through the API."""
        if state is None:
            old = self.plugin_states.pop(key, None)
            if old is None:
                return []
            name = old.probe
            if any(s.probe == name for s in self.plugin_states.values()):
                return []
            tracked = self.plugins.pop(name, None)
            self.revision.bump()
            if tracked is None or tracked.machine.state == "up":
                return []
            previous = tracked.machine.state
            tracked.machine.track.state = "up"
            tracked.machine.revision.bump()
            return self._change(
                tracked, Transition(previous, "up", now, f"probe {name} state removed")
            )
        if not self.spec.enabled or self.spec.probe_type == "disabled":
            return []
        self.plugin_states[key] = state
        tracked = self.plugins.get(state.probe)
        if tracked is None:
            tracked = self._new(None, None, f"probe:{state.probe}", True, "plugin")
            self.plugins[state.probe] = tracked
        at = state.set_at or now
        if state.state == "down":
            return self._change(
                tracked, tracked.machine.fail(self._plugin_down_reason(state.probe), at)
            )
        if tracked.machine.state == "unknown":
            return self._changes(
                tracked, tracked.machine.observe(True, f"probe {state.probe} reported up", at, at)
            )
        return []

    def expired_plugin_keys(self, now: float) -> list[str]:
        return [
            key
            for key, state in self.plugin_states.items()
            if state.expires_at is not None and state.expires_at <= now
        ]

    # --- time ---------------------------------------------------------------

    def tick(self, now: float, silence_windows: int) -> list[Change]:
        changes: list[Change] = []
        for tracked in self.all_tracked():
            changes.extend(self._change(tracked, tracked.machine.tick()))
        if self.last_window_end is not None:
            limit = (silence_windows + 1) * self.spec.window
            self.window_stale = now - self.last_window_end > limit
        return changes

    # --- output -----------------------------------------------------------

    def evaluate(self) -> None:
        """Recompute the route-level state and raw in-service flag (the machines' summary)."""
        if self._evaluated_at == self.revision.value:
            return
        self._evaluated_at = self.revision.value
        down = probation = up = False
        for tracked in self.all_tracked():
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

    @property
    def quality(self) -> float:
        """The route's quality score, computed when asked for (once per data version)."""
        version, quality = self._quality
        if version != self.data_version:
            self._fold()
            quality = route_quality(self.lane_metrics.values())
            self._quality = (self.data_version, quality)
        return quality

    def summary(self) -> RouteSummary:
        """Meets-SLA, reason and hold-down of the route, in one pass over its machines."""
        cached = self._summary
        if cached is not None and cached[0] == self.revision.value:
            return cached[1]
        state = self.state
        wanted = state if state in ("down", "probation") else None
        judged = False
        all_meet = True
        reasons: list[str] = []
        hold_down_until: float | None = None
        multiplier = 0
        for tracked in self.all_tracked():
            track = tracked.machine.track
            if track.multiplier > multiplier:
                multiplier = track.multiplier
            if not tracked.enforced:
                continue
            machine_state = track.state
            if machine_state != "unknown":
                judged = True
                if machine_state != "up" or not track.meets_sla:
                    all_meet = False
            if machine_state == wanted:
                reasons.append(track.reason)
            if (
                machine_state == "down"
                and track.hold_down_until
                and (hold_down_until is None or track.hold_down_until > hold_down_until)
            ):
                hold_down_until = track.hold_down_until
        meets_sla = state == "up" and judged and all_meet
        if wanted is not None:
            reason = "; ".join(reasons)
        elif state == "up":
            reason = "meets SLA" if meets_sla else "in service"
        else:
            reason = "no judged window yet"
        summary = RouteSummary(meets_sla, reason, hold_down_until, multiplier)
        self._summary = (self.revision.value, summary)
        return summary

    def meets_sla(self) -> bool:
        return self.summary().meets_sla

    def reason(self) -> str:
        return self.summary().reason

    def lane_states(self) -> list[LaneState]:
        """Every lane's state; rebuilt only when a machine or the lane data changed."""
        self._fold()
        cached = self._lane_states
        stamp = (self.revision.value, self.data_version)
        if cached is None or cached[0] != stamp:
            cached = self._lane_states = (stamp, self._build_lane_states())
        return list(cached[1])

    def _build_lane_states(self) -> list[LaneState]:
        states: list[LaneState] = []
        min_samples = self.spec.min_samples
        judged_slots: dict[AggregateKey, int] = {}
        shown_slots: dict[AggregateKey, int] = {}
        probe_slots: dict[ProbeLaneKey, int] = {}
        lane_metrics = self.lane_metrics
        tracked_lanes = self.lanes
        for key, metrics in lane_metrics.items():
            if key not in tracked_lanes:
                shown_slots[key] = len(states)
                states.append(_shown_lane(metrics, min_samples))
        for key, tracked in tracked_lanes.items():
            track = tracked.machine.track
            judged_slots[key] = len(states)
            states.append(
                LaneState(
                    protocol=key[0],  # type: ignore[arg-type]
                    traffic_class=key[1],  # type: ignore[arg-type]
                    source=key[2],  # type: ignore[arg-type]
                    state=track.state,
                    meets_sla=track.meets_sla and track.state == "up",
                    reason=track.reason,
                    since=track.since,
                    metrics=lane_metrics.get(key),
                    enforced=True,
                    hold_down_until=track.hold_down_until,
                    hold_down_multiplier=track.multiplier,
                    healthy_since=track.healthy_since,
                    alarm_raised_at=track.alarm_raised_at,
                )
            )
        for probe_key, shown in self.probe_lanes.items():
            probe_slots[probe_key] = len(states)
            states.append(shown)
        states.extend(self.destination_lanes.values())
        self._judged_slots = judged_slots
        self._shown_slots = shown_slots
        self._probe_slots = probe_slots
        return states

    def probe_statuses(self) -> list[ProbeStatus]:
        self._fold()
        statuses: list[ProbeStatus] = []
        seen: set[str] = set()
        for group in (self.probes, self.plugins):
            for name, tracked in group.items():
                seen.add(name)
                statuses.append(self._status(name, tracked.kind, tracked))
        for name, probe_spec in self.spec.probes.items():
            if name not in seen:
                statuses.append(
                    ProbeStatus(
                        name=name,
                        kind=probe_spec.kind,
                        enforced=probe_spec.enforced,
                        reason="no data yet",
                        counters=dict(self.counters.get(name, {})),
                    )
                )
        for cause, tracked in self.evidence.items():
            statuses.append(self._status(cause, "evidence", tracked))
        return statuses

    def _status(self, name: str, kind: str, tracked: Tracked) -> ProbeStatus:
        track = tracked.machine.track
        return ProbeStatus(
            name=name,
            kind=kind,
            state=track.state,
            reason=track.reason,
            since=track.since,
            counters=dict(self.counters.get(name, {})),
            enforced=tracked.enforced,
            hold_down_until=track.hold_down_until,
            hold_down_multiplier=track.multiplier,
            healthy_since=track.healthy_since,
            alarm_raised_at=track.alarm_raised_at,
            protocol=tracked.protocol,
        )

    def hold_down(self) -> tuple[float | None, int]:
        summary = self.summary()
        return summary.hold_down_until, summary.multiplier

    def snapshot(self, since: float, updated: float) -> PathState:
        """The route's PathState; when only figures (time, lane metrics, quality, probe
        counters) moved since the last one, that one with those replaced: nothing
        derived from the machines is rebuilt."""
        self._fold()
        key = (self.revision.value, self.state, self.best_effort, self.stale, since)
        last = self._snapshot
        if last is not None and last[0] == key:
            counters = self.counters
            replace = msgspec.structs.replace
            probes = [
                replace(status, counters=dict(counters.get(status.name, {})))
                for status in last[1].probes
            ]
            if last[2] == self.data_version:
                state = replace(last[1], updated=updated, probes=probes)
            else:
                state = replace(
                    last[1],
                    updated=updated,
                    quality=self.quality,
                    lanes=self.lane_states(),
                    probes=probes,
                )
        else:
            state = self._build_snapshot(since, updated)
        self._snapshot = (key, state, self.data_version)
        return state

    def unchanged_but_figures(self, previous: PathState) -> bool:
        """Whether `previous` (this route's last snapshot) differs from a new one only in
        figures: lane metrics, quality, probe counters and the update time."""
        last = self._snapshot
        return (
            last is not None
            and last[1] is previous
            and last[0][0] == self.revision.value
            and previous.state == self.state
            and previous.best_effort == self.best_effort
            and previous.stale == self.stale
        )

    def _build_snapshot(self, since: float, updated: float) -> PathState:
        spec = self.spec
        summary = self.summary()
        in_service = self.raw_in_service or self.best_effort
        return PathState(
            service=spec.service,
            route=spec.route,
            node=spec.node,
            interface=spec.interface,
            gateway=spec.gateway,
            cost=spec.cost,
            state=self.state,
            in_service=in_service,
            best_effort=self.best_effort,
            meets_sla=summary.meets_sla,
            enforcement=spec.enforcement,
            stale=self.stale,
            reason=summary.reason,
            since=since,
            updated=updated,
            hold_down_until=summary.hold_down_until,
            hold_down_multiplier=summary.multiplier,
            quality=self.quality,
            lanes=self.lane_states(),
            probes=self.probe_statuses(),
        )

    # --- restore ----------------------------------------------------------

    def restore(self, state: PathState) -> None:
        """Take over machines, metrics and counters from a PathState read from KV."""
        self._fold()
        self._quiet = None
        self._note_later = None
        self.revision.bump()
        self.data_version += 1
        for lane in state.lanes:
            if lane.probe:
                self.probe_lanes[
                    (lane.probe, lane.protocol, lane.traffic_class, lane.destination)
                ] = lane
                continue
            if lane.destination:
                self.destination_lanes[
                    (lane.source, lane.protocol, lane.traffic_class, lane.destination)
                ] = lane
                continue
            key = (lane.protocol, lane.traffic_class, lane.source)
            if lane.metrics is not None:
                self.lane_metrics[key] = lane.metrics
            if lane.enforced and lane.protocol in REACHABILITY_PROTOCOLS:
                self.lanes[key] = self._new(
                    lane.protocol, lane.traffic_class, "reachability", True, track=_track_from(lane)
                )
        for status in state.probes:
            track = _track_from(status)
            track.meets_sla = status.state == "up"
            if status.kind == "evidence":
                self.evidence[status.name] = self._new(
                    status.protocol, None, status.name, True, "evidence", track
                )
            elif status.kind == "plugin":
                self.plugins[status.name] = self._new(
                    None, None, f"probe:{status.name}", True, "plugin", track
                )
            elif status.state != "unknown" or status.hold_down_multiplier:
                self.probes[status.name] = self._new(
                    status.protocol,
                    None,
                    f"probe:{status.name}",
                    status.enforced,
                    status.kind,
                    track,
                )
            if status.counters:
                self.counters[status.name] = dict(status.counters)
        self.best_effort = state.best_effort
        self.stale = state.stale
        self.since = state.since
        self.evaluate()
