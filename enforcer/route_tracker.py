"""Judgement of one service route: its lane, probe and evidence machines.

Aggregate lanes (destination and probe empty) of tcp / udp / tls / http are
judged against the reachability profile; each ICMP / HTTP probe against its
SLA on every probe address (any address failing takes the probe down);
plugin probes follow the state set through the API; link and neighbour
evidence takes the route down at once. The route is down when any enforced
machine is down.
"""

from collections.abc import Iterator
from dataclasses import dataclass

from enforcer.judge import (
    NOT_JUDGED,
    PASSED,
    Verdict,
    combine,
    judge_reachability,
    judge_sla,
)
from enforcer.quality import route_quality
from enforcer.route_spec import REACHABILITY_PROTOCOLS, RouteSpec
from enforcer.state_machine import Clock, PathMachine, TrackState, Transition
from schemas.wire import (
    FastEvidence,
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
ProbeLaneKey = tuple[str, str, str, str]

#: Causes of route-level evidence machines, with the protocol shown for them.
EVIDENCE_CAUSES = ("link", "neighbour", "consecutive-failures")


@dataclass
class Tracked:
    """One machine and what it judges (for alarms and display)."""

    machine: PathMachine
    protocol: Protocol | None
    traffic_class: TrafficClass | None
    cause: str
    enforced: bool
    kind: str = ""


@dataclass(frozen=True)
class Change:
    """A transition of one machine of a route."""

    route: str
    tracked: Tracked
    transition: Transition


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
        self.quality = 0.0

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
        return Tracked(
            PathMachine(self.spec.hold_down, self.clock, track),
            protocol,
            traffic_class,
            cause,
            enforced,
            kind,
        )

    def all_tracked(self) -> Iterator[Tracked]:
        yield from self.lanes.values()
        yield from self.probes.values()
        yield from self.plugins.values()
        yield from self.evidence.values()

    def _changes(self, tracked: Tracked, transitions: list[Transition]) -> list[Change]:
        return [Change(self.spec.key, tracked, transition) for transition in transitions]

    def _change(self, tracked: Tracked, transition: Transition | None) -> list[Change]:
        return [] if transition is None else [Change(self.spec.key, tracked, transition)]

    # --- inputs -------------------------------------------------------------

    def on_window(self, window: WindowStats) -> list[Change]:
        """Judge every lane of a closed window; returns the transitions it caused."""
        spec = self.spec
        start, end = window.window_start, window.window_end
        if self.last_window_end is None or end > self.last_window_end:
            self.last_window_end = end
        changes: list[Change] = []
        probe_verdicts: dict[str, list[Verdict]] = {}
        probe_protocols: dict[str, Protocol] = {}
        min_samples = spec.min_samples
        for lane in window.lanes:
            if lane.probe:
                verdict = self._judge_probe_lane(lane, end)
                probe_verdicts.setdefault(lane.probe, []).append(verdict)
                probe_protocols.setdefault(lane.probe, lane.protocol)
                continue
            if lane.destination:
                key4 = (lane.source, lane.protocol, lane.traffic_class, lane.destination)
                self.destination_lanes[key4] = LaneState(
                    protocol=lane.protocol,
                    traffic_class=lane.traffic_class,
                    source=lane.source,
                    destination=lane.destination,
                    state="up" if lane.count >= min_samples else "unknown",
                    since=end,
                    metrics=lane,
                    enforced=False,
                )
                continue
            key = (lane.protocol, lane.traffic_class, lane.source)
            self.lane_metrics[key] = lane
            if not spec.enabled or lane.protocol not in REACHABILITY_PROTOCOLS:
                continue
            tracked = self.lanes.get(key)
            if tracked is None:
                tracked = self._new(lane.protocol, lane.traffic_class, "reachability", True)
                self.lanes[key] = tracked
            verdict = judge_reachability(
                lane, spec.thresholds_for(lane.protocol, lane.traffic_class), min_samples
            )
            changes.extend(
                self._changes(
                    tracked, tracked.machine.observe(verdict.passed, verdict.reason, start, end)
                )
            )
        if spec.enabled:
            for name, verdicts in probe_verdicts.items():
                probe_spec = spec.probes.get(name)
                tracked = self.probes.get(name)
                if tracked is None:
                    enforced = probe_spec is not None and probe_spec.enforced
                    kind = probe_spec.kind if probe_spec is not None else probe_protocols[name]
                    tracked = self._new(
                        probe_protocols[name], None, f"probe:{name}", enforced, kind
                    )
                    self.probes[name] = tracked
                verdict = combine(verdicts)
                changes.extend(
                    self._changes(
                        tracked, tracked.machine.observe(verdict.passed, verdict.reason, start, end)
                    )
                )
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
        return changes

    def _judge_probe_lane(self, lane: LaneStats, end: float) -> Verdict:
        spec = self.spec
        probe_spec = spec.probes.get(lane.probe)
        enforced = probe_spec is not None and probe_spec.enforced
        if probe_spec is not None and probe_spec.sla is not None:
            verdict, excess = judge_sla(lane, probe_spec.sla, spec.min_samples)
            counters = self.counters.setdefault(lane.probe, {})
            outcomes = lane.outcomes
            for counter, outcome in (
                ("success", "ok"),
                ("response-timeout", "timeout"),
                ("failed-to-send", "send-failed"),
            ):
                counters[counter] = counters.get(counter, 0) + outcomes.get(outcome, 0)
            for counter, hit in (
                ("exceeded-by-max-loss", excess.loss),
                ("exceeded-by-max-latency", excess.latency_max),
                ("exceeded-by-mean-latency", excess.latency_mean),
                ("exceeded-by-max-jitter", excess.jitter),
            ):
                counters[counter] = counters.get(counter, 0) + int(hit)
        elif lane.protocol in REACHABILITY_PROTOCOLS:
            verdict = judge_reachability(
                lane, spec.thresholds_for(lane.protocol, lane.traffic_class), spec.min_samples
            )
        else:
            verdict = PASSED if lane.count >= spec.min_samples else NOT_JUDGED
        state: PathStateName = (
            "unknown" if verdict.passed is None else "up" if verdict.passed else "down"
        )
        self.probe_lanes[(lane.probe, lane.protocol, lane.traffic_class, lane.destination)] = (
            LaneState(
                protocol=lane.protocol,
                traffic_class=lane.traffic_class,
                source=lane.source,
                destination=lane.destination,
                probe=lane.probe,
                state=state,
                meets_sla=verdict.passed is True,
                reason=verdict.reason,
                since=end,
                metrics=lane,
                enforced=enforced,
            )
        )
        return verdict

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
        label = f"{protocol or 'any'}/{traffic_class or 'any'}"
        reason = f"{label} {evidence.count} consecutive failures{detail}"
        targets: list[Tracked] = []
        if protocol in REACHABILITY_PROTOCOLS and traffic_class is not None:
            key = (protocol, traffic_class, "probe")
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
            if tracked is None or tracked.machine.state == "up":
                return []
            previous = tracked.machine.state
            tracked.machine.track.state = "up"
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
        """Recompute the route-level state, quality and raw in-service flag."""
        states = {t.machine.state for t in self.all_tracked() if t.enforced}
        if "down" in states:
            state: PathStateName = "down"
        elif "probation" in states:
            state = "probation"
        elif "up" in states:
            state = "up"
        else:
            state = "unknown"
        self.state = state
        self.raw_in_service = not (self.spec.enforcement and state == "down")
        self.quality = route_quality(self.lane_metrics.values())

    def meets_sla(self) -> bool:
        if self.state != "up":
            return False
        judged = [t for t in self.all_tracked() if t.enforced and t.machine.state != "unknown"]
        return bool(judged) and all(
            t.machine.state == "up" and t.machine.track.meets_sla for t in judged
        )

    def reason(self) -> str:
        wanted = self.state if self.state in ("down", "probation") else None
        if wanted is None:
            if self.state == "up":
                return "meets SLA" if self.meets_sla() else "in service"
            return "no judged window yet"
        return "; ".join(
            t.machine.track.reason
            for t in self.all_tracked()
            if t.enforced and t.machine.state == wanted
        )

    def lane_states(self) -> list[LaneState]:
        states: list[LaneState] = []
        min_samples = self.spec.min_samples
        for key, metrics in self.lane_metrics.items():
            tracked = self.lanes.get(key)
            if tracked is None:
                states.append(
                    LaneState(
                        protocol=metrics.protocol,
                        traffic_class=metrics.traffic_class,
                        source=metrics.source,
                        state="up" if metrics.count >= min_samples else "unknown",
                        meets_sla=metrics.count >= min_samples,
                        metrics=metrics,
                        enforced=False,
                    )
                )
        for key, tracked in self.lanes.items():
            track = tracked.machine.track
            states.append(
                LaneState(
                    protocol=key[0],  # type: ignore[arg-type]
                    traffic_class=key[1],  # type: ignore[arg-type]
                    source=key[2],  # type: ignore[arg-type]
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
        states.extend(self.probe_lanes.values())
        states.extend(self.destination_lanes.values())
        return states

    def probe_statuses(self) -> list[ProbeStatus]:
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
            state="down"
            if track.state == "down"
            else "up"
            if track.state in ("up", "probation")
            else "unknown",
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
        until = [
            t.machine.track.hold_down_until
            for t in self.all_tracked()
            if t.enforced and t.machine.state == "down" and t.machine.track.hold_down_until
        ]
        multiplier = max((t.machine.track.multiplier for t in self.all_tracked()), default=0)
        return (max(until) if until else None), multiplier

    def snapshot(self, since: float, updated: float) -> PathState:
        spec = self.spec
        hold_down_until, multiplier = self.hold_down()
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
            meets_sla=self.meets_sla(),
            enforcement=spec.enforcement,
            stale=self.stale,
            reason=self.reason(),
            since=since,
            updated=updated,
            hold_down_until=hold_down_until,
            hold_down_multiplier=multiplier,
            quality=self.quality,
            lanes=self.lane_states(),
            probes=self.probe_statuses(),
        )

    # --- restore ----------------------------------------------------------

    def restore(self, state: PathState) -> None:
        """Take over machines, metrics and counters from a PathState read from KV."""
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
