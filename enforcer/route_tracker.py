"""Judgement of one service route: each window's lanes onto the route's machines.

Aggregate lanes (destination and probe empty) of tcp / udp / tls / http are
judged against the reachability profile; each ICMP / HTTP probe against its
SLA on every probe address (any address failing takes the probe down);
plugin probes and fast evidence are handled by `enforcer.route_evidence`.
The route is down when any enforced machine is down.

`RouteTracker` is what the engine holds per route. It puts together the
route's parts, each with one job: its machines and the settling of their
changes (`route_machines`), evidence outside windows (`route_evidence`), its
figures and lane states (`route_figures`), its PathState (`route_view`) and
the quiet-window shortcut (`quiet`). Every input returns the changes it
caused, alarms already settled; the engine never changes a machine.
"""

from collections.abc import Iterator

from enforcer.judge import NOT_JUDGED, PASSED, RouteJudges, Verdict, combine
from enforcer.quiet import QuietShortcut
from enforcer.quiet_types import QuietDecoder
from enforcer.route_evidence import RouteEvidence
from enforcer.route_figures import RouteFigures, lane_key
from enforcer.route_machines import AlarmNotice, Change, RouteMachines, Tracked
from enforcer.route_spec import REACHABILITY_PROTOCOLS, RouteSpec
from enforcer.route_view import RouteView
from enforcer.rules import enough_samples
from enforcer.state_machine import Clock, Revision
from schemas.wire import (
    FastEvidence,
    LaneStats,
    PathState,
    PathStateName,
    ProbeState,
    Protocol,
    WindowStats,
)

__all__ = ["AlarmNotice", "Change", "RouteTracker", "Tracked"]


class RouteTracker:
    """One route: its machines, judged window by window, and what it shows."""

    def __init__(self, spec: RouteSpec, clock: Clock) -> None:
        self.spec = spec
        self.clock = clock
        #: Bumped by every change of a machine or of a shown state of this route.
        self.revision = Revision()
        self.machines = RouteMachines(spec, clock, self.revision)
        self.evidence = RouteEvidence(spec, self.machines)
        self.figures = RouteFigures(spec, self.machines, self.revision)
        self.view = RouteView(spec, self.machines, self.figures, self.revision)
        self.judges = RouteJudges(spec)
        self.quiet = QuietShortcut(
            spec, clock, self.revision, self.machines, self.figures, self.judges
        )
        self.last_window_end: float | None = None
        #: Set by the engine: no window for too long / its agents lost; kept in service.
        self.window_stale = False
        self.stale = False
        self.best_effort = False
        self.since = 0.0
        #: Whether the last window taken was quiet (changed nothing but figures).
        self.quiet_taken = False

    # --- what the engine reads ------------------------------------------------

    @property
    def state(self) -> PathStateName:
        return self.machines.state

    @property
    def raw_in_service(self) -> bool:
        return self.machines.raw_in_service

    @property
    def probes(self) -> dict[str, Tracked]:
        return self.machines.probes

    @property
    def plugin_states(self) -> dict[str, ProbeState]:
        return self.evidence.plugin_states

    @property
    def quality(self) -> float:
        return self.figures.quality

    def all_tracked(self) -> Iterator[Tracked]:
        return self.machines.all()

    def evaluate(self) -> None:
        self.machines.evaluate()

    def snapshot(self, since: float, updated: float) -> PathState:
        return self.view.snapshot(self.best_effort, self.stale, since, updated)

    def unchanged_but_figures(self, previous: PathState) -> bool:
        return self.view.unchanged_but_figures(previous, self.best_effort, self.stale)

    # --- windows --------------------------------------------------------------

    def _saw(self, end: float) -> None:
        if self.last_window_end is None or end > self.last_window_end:
            self.last_window_end = end

    def quiet_decoder(self) -> QuietDecoder | None:
        """A decoder that accepts the next window only if it is quiet (`enforcer.quiet`)."""
        return self.quiet.decoder()

    def take_decoded_quiet(self, window: WindowStats) -> bool:
        """Take a window that `quiet_decoder`'s decoder accepted: figures only. False
        (nothing taken) when it ends past a hold-down; then judge it with `on_window`."""
        end = window.window_end
        if self.quiet.still_open(end) is None:
            return False
        self._saw(end)
        self._observe_recovery(window.lanes, end)
        self.figures.take_quiet(window.lanes)
        self.quiet_taken = True
        return True

    def _observe_recovery(self, lanes: list[LaneStats], end: float) -> None:
        """Count a window's probe replies toward recovery while the route is down.

        The route's last settled state says whether it may be down (every change of a
        machine is settled and evaluated before the next window); only then is it
        evaluated again, so healthy routes pay nothing here. A route that went down
        without being settled yet misses one window of replies: recovery is later,
        never earlier."""
        machines = self.machines
        if machines.state != "down":
            return
        machines.evaluate()
        if machines.state == "down":
            machines.recovery.observe(lanes, end)

    def on_window(self, window: WindowStats) -> list[Change]:
        """Judge every lane of a closed window; returns the changes it caused."""
        start, end = window.window_start, window.window_end
        self._saw(end)
        self._observe_recovery(window.lanes, end)
        self.quiet_taken = self.quiet.accepts(window.lanes, end)
        if self.quiet_taken:
            self.figures.take_quiet(window.lanes)
            return []
        self.figures.fold()
        changes: list[Change] = []
        probe_verdicts: dict[str, list[Verdict]] = {}
        probe_protocols: dict[str, Protocol] = {}
        for lane in window.lanes:
            if lane.probe:
                verdict = self._judge_probe_lane(lane, end)
                if verdict is not None:
                    probe_verdicts.setdefault(lane.probe, []).append(verdict)
                    probe_protocols.setdefault(lane.probe, lane.protocol)
            elif lane.destination:
                self.figures.show_destination(lane, end)
            else:
                changes.extend(self._judge_aggregate(lane, start, end))
        if self.spec.enabled:
            for name, verdicts in probe_verdicts.items():
                tracked = self._probe_machine(name, probe_protocols[name])
                changes.extend(self.machines.observe(tracked, combine(verdicts), start, end))
            changes.extend(self.evidence.observe_window(start, end))
        self.figures.moved()
        went_down = any(change.transition.state == "down" for change in changes)
        self.quiet.after_judged(window.lanes, went_down)
        return changes

    def _judge_aggregate(self, lane: LaneStats, start: float, end: float) -> list[Change]:
        """An aggregate lane: its figures kept, and judged when the route judges it."""
        spec = self.spec
        key = lane_key(lane)
        self.figures.lane_metrics[key] = lane
        if (
            not spec.enabled
            or lane.protocol not in REACHABILITY_PROTOCOLS
            or (spec.probe_type == "disabled" and lane.source != "passive")
        ):
            return []
        judge = self.judges.reachability(lane.protocol, lane.traffic_class)
        verdict = judge.verdict(lane, spec.min_samples)
        return self.machines.observe(self.machines.lane(key), verdict, start, end)

    def _judge_probe_lane(self, lane: LaneStats, end: float) -> Verdict | None:
        """One probe address: its verdict (counted, shown); None when not judged at all."""
        spec = self.spec
        if spec.probe_type == "disabled":
            self.figures.show_unjudged_probe(lane, end)
            return None
        sla = self.judges.sla(lane.probe)
        if sla is not None:
            verdict = sla.verdict(lane, spec.min_samples)
            self.figures.count_probe(lane, verdict)
        elif lane.protocol in REACHABILITY_PROTOCOLS:
            judge = self.judges.reachability(lane.protocol, lane.traffic_class)
            verdict = judge.verdict(lane, spec.min_samples)
        else:
            verdict = PASSED if enough_samples(lane, spec.min_samples) else NOT_JUDGED
        probe_spec = spec.probes.get(lane.probe)
        enforced = probe_spec is not None and probe_spec.enforced
        self.figures.show_probe(lane, verdict, end, enforced)
        return verdict

    def _probe_machine(self, name: str, protocol: Protocol) -> Tracked:
        probe_spec = self.spec.probes.get(name)
        enforced = probe_spec is not None and probe_spec.enforced
        kind = probe_spec.kind if probe_spec is not None else protocol
        return self.machines.probe(name, protocol, enforced, kind)

    # --- evidence and time ------------------------------------------------------

    def on_fast(self, evidence: FastEvidence) -> list[Change]:
        """Act on early evidence at once (`enforcer.route_evidence`)."""
        return self.evidence.on_fast(evidence)

    def set_plugin_state(self, key: str, state: ProbeState | None, now: float) -> list[Change]:
        """Probe state set (or deleted, or expired: None) through the API."""
        return self.evidence.set_plugin_state(key, state, now)

    def expired_plugin_keys(self, now: float) -> list[str]:
        return self.evidence.expired_plugin_keys(now)

    def tick(self, now: float, silence_windows: int) -> list[Change]:
        """Expired hold-downs, and whether the route's windows fell silent."""
        changes = self.machines.tick()
        if self.last_window_end is not None:
            limit = (silence_windows + 1) * self.spec.window
            self.window_stale = now - self.last_window_end > limit
        return changes

    # --- restart ----------------------------------------------------------------

    def restore(self, state: PathState) -> None:
        """Take over machines, figures and flags from a PathState read from KV."""
        self.quiet.forget()
        self.figures.restore(state)
        self.machines.restore(state)
        self.best_effort = state.best_effort
        self.stale = state.stale
        self.since = state.since
