"""What one route shows: its `PathState`, built from its machines and its figures.

The route-level summary (meets-SLA, the reason, the longest hold-down) comes
from the enforced machines; the reason of a route that is down or on
probation is every such machine's reason. A PathState whose machines did not
change since the last one is that one with only its figures replaced (lane
metrics, quality, probe counters, update time).
"""

from typing import NamedTuple

import msgspec

from enforcer.route_figures import RouteFigures
from enforcer.route_machines import RouteMachines, Tracked
from enforcer.route_spec import RouteSpec
from enforcer.state_machine import Revision
from schemas.wire import PathState, ProbeStatus


class RouteSummary(NamedTuple):
    """Route-level figures derived from every machine of a route."""

    meets_sla: bool
    reason: str
    hold_down_until: float | None
    multiplier: int


class RouteView:
    """The PathState of one route, rebuilt only as far as something changed."""

    def __init__(
        self, spec: RouteSpec, machines: RouteMachines, figures: RouteFigures, revision: Revision
    ) -> None:
        self.spec = spec
        self.machines = machines
        self.figures = figures
        self.revision = revision
        self._summary: tuple[int, RouteSummary] | None = None
        #: The last PathState: (revision, state, best-effort, stale, since), it, figures version.
        self._snapshot: tuple[tuple[int, str, bool, bool, float], PathState, int] | None = None

    def summary(self) -> RouteSummary:
        """Meets-SLA, reason and hold-down of the route, in one pass over its machines."""
        cached = self._summary
        if cached is not None and cached[0] == self.revision.value:
            return cached[1]
        state = self.machines.state
        wanted = state if state in ("down", "probation") else None
        judged, all_meet = False, True
        reasons: list[str] = []
        hold_down_until: float | None = None
        multiplier = 0
        for tracked in self.machines.all():
            track = tracked.machine.track
            multiplier = max(multiplier, track.multiplier)
            if not tracked.enforced:
                continue
            if track.state != "unknown":
                judged = True
                all_meet = all_meet and track.state == "up" and track.meets_sla
            if track.state == wanted:
                reasons.append(track.reason)
            if track.state == "down" and track.hold_down_until:
                hold_down_until = max(hold_down_until or 0.0, track.hold_down_until)
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

    def probe_statuses(self) -> list[ProbeStatus]:
        self.figures.fold()
        counters = self.figures.counters
        statuses: list[ProbeStatus] = []
        seen: set[str] = set()
        for group in (self.machines.probes, self.machines.plugins):
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
                        counters=dict(counters.get(name, {})),
                    )
                )
        for cause, tracked in self.machines.evidence.items():
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
            counters=dict(self.figures.counters.get(name, {})),
            enforced=tracked.enforced,
            hold_down_until=track.hold_down_until,
            hold_down_multiplier=track.multiplier,
            healthy_since=track.healthy_since,
            alarm_raised_at=track.alarm_raised_at,
            protocol=tracked.protocol,
        )

    def snapshot(self, best_effort: bool, stale: bool, since: float, updated: float) -> PathState:
        """The route's PathState (`best_effort`, `stale`: the engine's flags of the route);
        when only figures moved since the last one, that one with those replaced: nothing
        derived from the machines is rebuilt."""
        figures = self.figures
        figures.fold()
        key = (self.revision.value, self.machines.state, best_effort, stale, since)
        last = self._snapshot
        if last is None or last[0] != key:
            state = self._build(best_effort, stale, since, updated)
        else:
            replace = msgspec.structs.replace
            counters = figures.counters
            probes = [
                replace(status, counters=dict(counters.get(status.name, {})))
                for status in last[1].probes
            ]
            state = replace(last[1], updated=updated, probes=probes)
            if last[2] != figures.version:
                state = replace(state, quality=figures.quality, lanes=figures.lane_states())
        self._snapshot = (key, state, figures.version)
        return state

    def unchanged_but_figures(self, previous: PathState, best_effort: bool, stale: bool) -> bool:
        """Whether `previous` (this route's last snapshot) differs from a new one only in
        figures: lane metrics, quality, probe counters and the update time."""
        last = self._snapshot
        return (
            last is not None
            and last[1] is previous
            and last[0][0] == self.revision.value
            and previous.state == self.machines.state
            and previous.best_effort == best_effort
            and previous.stale == stale
        )

    def _build(self, best_effort: bool, stale: bool, since: float, updated: float) -> PathState:
        spec = self.spec
        summary = self.summary()
        machines = self.machines
        held = machines.recovery.held if machines.state == "down" else ""
        return PathState(
            service=spec.service,
            route=spec.route,
            node=spec.node,
            interface=spec.interface,
            gateway=spec.gateway,
            cost=spec.cost,
            state=machines.state,
            in_service=machines.raw_in_service or best_effort,
            best_effort=best_effort,
            meets_sla=summary.meets_sla,
            enforcement=spec.enforcement,
            stale=stale,
            reason=f"{summary.reason}; held: {held}" if held else summary.reason,
            since=since,
            updated=updated,
            hold_down_until=summary.hold_down_until,
            hold_down_multiplier=summary.multiplier,
            quality=self.figures.quality,
            lanes=self.figures.lane_states(),
            probes=self.probe_statuses(),
            recovery=machines.recovery.rule,
            recovery_held=held,
        )
