"""Evidence about one route that does not wait for its window.

Fast evidence (link down, neighbour unresolved, consecutive failures) takes
the machine it is about down at once: the lane's machine for a failing lane
of tcp / udp / tls / http, the enforced probes of that kind for a probe
kind, else a route-level evidence machine. Link and neighbour evidence is
latched until the matching "up" evidence, so each window keeps it down.
Plugin probe states set through the API drive one machine per plugin probe.
"""

from enforcer.reasons import consecutive_failures_reason
from enforcer.route_machines import Change, RouteMachines, Tracked
from enforcer.route_spec import REACHABILITY_PROTOCOLS, RouteSpec
from schemas import probekinds
from schemas.wire import FastEvidence, Lane, ProbeState


class RouteEvidence:
    """Fast evidence and plugin probe states of one route, onto its machines."""

    def __init__(self, spec: RouteSpec, machines: RouteMachines) -> None:
        self.spec = spec
        self.machines = machines
        #: Latched evidence (link, neighbour) by cause: its reason while it holds.
        self.evidence_down: dict[str, str] = {}
        #: Plugin probe states by their `pathwatch-probes` key.
        self.plugin_states: dict[str, ProbeState] = {}

    # --- fast evidence ------------------------------------------------------

    def on_fast(self, evidence: FastEvidence) -> list[Change]:
        """Act on early evidence at once."""
        if not self.spec.enabled:
            return []
        kind = evidence.kind
        if kind in ("link-up", "neighbour-resolved"):
            self.evidence_down.pop("link" if kind == "link-up" else "neighbour", None)
            return []
        where = "/".join(part for part in (evidence.node, evidence.interface) if part)
        where = where or "next hop"
        detail = f" ({evidence.detail})" if evidence.detail else ""
        if kind == "link-down":
            return self._latch("link", f"link down on {where}{detail}", evidence.ts)
        if kind == "neighbour-unresolved":
            gateway = evidence.gateway or "gateway"
            reason = f"neighbour {gateway} unresolved on {where}{detail}"
            return self._latch("neighbour", reason, evidence.ts)
        return self._consecutive_failures(evidence)

    def _consecutive_failures(self, evidence: FastEvidence) -> list[Change]:
        reason = consecutive_failures_reason(evidence)
        protocol, traffic_class = evidence.protocol, evidence.traffic_class
        passive_only = self.spec.probe_type == "disabled"
        source = evidence.source or ("passive" if passive_only else "probe")
        if passive_only and (
            source != "passive" or (protocol is not None and protocol not in REACHABILITY_PROTOCOLS)
        ):
            return []  # probe evidence on a route judged on real traffic only
        targets: list[Tracked] = []
        if protocol in REACHABILITY_PROTOCOLS and traffic_class is not None:
            targets.append(self.machines.lane(Lane(protocol, traffic_class, source)))
        elif protocol is not None:
            targets = self._probes_of_kind(protocol)
        if not targets:
            tracked = self.machines.evidence_of("consecutive-failures")
            return self.machines.fail(tracked, reason, evidence.ts)
        changes: list[Change] = []
        for tracked in targets:
            changes.extend(self.machines.fail(tracked, reason, evidence.ts))
        return changes

    def _probes_of_kind(self, kind: str) -> list[Tracked]:
        """The enforced probe machines of one kind, made for the configured ones if none."""
        machines = self.machines
        found = [t for t in machines.probes.values() if t.enforced and t.kind == kind]
        if found:
            return found
        protocol = probekinds.BY_NAME[kind].protocol if kind in probekinds.SLA_KINDS else None
        return [
            machines.probe(probe.name, protocol, True, probe.kind)
            for probe in self.spec.probes.values()
            if probe.enforced and probe.kind == kind
        ]

    def _latch(self, cause: str, reason: str, at: float) -> list[Change]:
        self.evidence_down[cause] = reason
        return self.machines.fail(self.machines.evidence_of(cause), reason, at)

    # --- plugin probe states ------------------------------------------------

    def plugin_down_reason(self, name: str) -> str:
        for state in self.plugin_states.values():
            if state.probe == name and state.state == "down":
                return f"probe {name} reported down" + (f": {state.reason}" if state.reason else "")
        return ""

    def set_plugin_state(self, key: str, state: ProbeState | None, now: float) -> list[Change]:
        """Probe state set (or deleted, or expired: None) through the API."""
        if state is None:
            return self._forget_plugin_state(key, now)
        if not self.spec.enabled or self.spec.probe_type == "disabled":
            return []
        self.plugin_states[key] = state
        tracked = self.machines.plugin(state.probe)
        at = state.set_at or now
        if state.state == "down":
            return self.machines.fail(tracked, self.plugin_down_reason(state.probe), at)
        if tracked.machine.state == "unknown":
            verdict_reason = f"probe {state.probe} reported up"
            return [
                self.machines.settle(tracked, transition)
                for transition in tracked.machine.observe(True, verdict_reason, at, at)
            ]
        return []

    def _forget_plugin_state(self, key: str, now: float) -> list[Change]:
        old = self.plugin_states.pop(key, None)
        if old is None:
            return []
        name = old.probe
        if any(s.probe == name for s in self.plugin_states.values()):
            return []
        tracked = self.machines.plugins.pop(name, None)
        self.machines.revision.bump()
        if tracked is None:
            return []
        return self.machines.release(tracked, f"probe {name} state removed", now)

    def expired_plugin_keys(self, now: float) -> list[str]:
        return [
            key
            for key, state in self.plugin_states.items()
            if state.expires_at is not None and state.expires_at <= now
        ]

    # --- every window -------------------------------------------------------

    def observe_window(self, start: float, end: float) -> list[Change]:
        """A window closed: latched evidence and plugin states judge their machines again."""
        machines = self.machines
        changes: list[Change] = []
        for cause, tracked in machines.evidence.items():
            reason = self.evidence_down.get(cause, "")
            changes.extend(self._observe(tracked, reason, start, end))
        for name, tracked in machines.plugins.items():
            reason = self.plugin_down_reason(name)
            changes.extend(self._observe(tracked, reason, start, end))
        return changes

    def _observe(self, tracked: Tracked, reason: str, start: float, end: float) -> list[Change]:
        transitions = tracked.machine.observe(not reason, reason, start, end)
        return [self.machines.settle(tracked, transition) for transition in transitions]
