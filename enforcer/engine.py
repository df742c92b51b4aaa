"""The enforcer's brain without I/O: inputs in, path states and messages out.

`Engine` owns a `RouteTracker` per route, the agent liveness table and the
best-effort choice per service. Each input method returns `Outputs`: the path
states to write to KV and the events, alarms and commands to publish (with
deterministic ids for JetStream de-duplication). Commands are produced only
for routes in enforcement mode; whether they are sent is the caller's call
(only the active instance sends).

Metrics refresh with a bounded delay: a window that changes nothing but a
route's figures (lane metrics, quality, probe counters) does not rebuild its
PathState at once; the route is marked and `flush_metrics` (run by `tick`)
rebuilds it once its last written PathState is `metrics_refresh` seconds old
(default `METRICS_REFRESH_SECONDS` = 0: at the next tick, so the API and `show`
lag the window by about one tick; a larger value trades metric freshness for
less work on very large deployments). The service gives each tick's refresh a
processor-time budget, so on very large deployments figures lag a few ticks
rather than delaying judgement. Every change of state, in-service,
best-effort, staleness, reason or hold-down, and every event, alarm and
command, is still produced by the input that caused it; selection and
`path_states` always see current figures.
"""

import logging
import time
from collections import Counter

import msgspec

from enforcer.agent_alarms import AgentAlarms
from enforcer.messages import Outputs, Publication, alarm_publication, route_messages
from enforcer.reconfigure import ROUTE_REMOVED, plan_routes, raised_alarms
from enforcer.route_spec import RouteSpec, route_specs
from enforcer.route_tracker import AlarmNotice, Change, RouteTracker
from enforcer.selection import Candidate, best_effort_choice, select
from enforcer.state_machine import Clock
from schemas.codec import decode_message
from schemas.config import PathwatchConfig
from schemas.limits import (
    MAX_CLOCK_OFFSET_S,
    MAX_TEXT_CHARS,
    clip,
)
from schemas.wire import (
    SCHEMA_VERSION,
    AgentHeartbeat,
    Alarm,
    FastEvidence,
    LbSelectReply,
    LbSelectRequest,
    PathState,
    ProbeState,
    WindowStats,
)

__all__ = ["METRICS_REFRESH_SECONDS", "Engine", "Outputs", "Publication", "probe_key_target"]

log = logging.getLogger("pathwatch.enforcer")

#: Longest delay of a route's metrics in KV when nothing else of it changes.
METRICS_REFRESH_SECONDS = 0.0

_NO_ROUTES: dict[str, RouteTracker] = {}


def probe_key_target(key: str) -> tuple[str, str, str] | None:
    """(probe, 'route'|'if', rest) of a `pathwatch-probes` key, None when malformed."""
    parts = key.split(".")
    if len(parts) == 3:
        return parts[0], "route", f"{parts[1]}.{parts[2]}"
    if len(parts) == 4 and parts[1] == "if":
        return parts[0], "if", f"{parts[2]}.{parts[3]}"
    return None


class Engine:
    """Judgement, state machines, alarms, best-effort and selection for every route."""

    def __init__(
        self,
        config: PathwatchConfig,
        clock: Clock,
        metrics_refresh: float = METRICS_REFRESH_SECONDS,
    ) -> None:
        self.config = config
        self.clock = clock
        self.metrics_refresh = metrics_refresh
        #: Routes whose figures moved since their last PathState: key -> evidence time.
        self.pending_metrics: dict[str, float] = {}
        self.silence_windows = config.enforcer.agent_silence_windows
        self._index({spec.key: RouteTracker(spec, clock) for spec in route_specs(config)})
        self.previous: dict[str, PathState] = {}
        #: Inputs dropped, by `<input>:<reason>` (published in the role status).
        self.dropped: Counter[str] = Counter()
        self.agents = AgentAlarms(self.silence_windows, self._agent_window, self.dropped)
        self.liveness = self.agents.liveness

    def _index(self, trackers: dict[str, RouteTracker]) -> None:
        """Take `trackers` (by route key) and the tables derived from them."""
        self.trackers = trackers
        #: The same trackers by service, then route (no key string built per window).
        self.by_name: dict[str, dict[str, RouteTracker]] = {}
        self.services: dict[str, list[RouteTracker]] = {}
        for tracker in trackers.values():
            spec = tracker.spec
            self.by_name.setdefault(spec.service, {})[spec.route] = tracker
            self.services.setdefault(spec.service, []).append(tracker)
        #: Routes of each service that detection is enabled on (best-effort candidates).
        self.enabled_routes: dict[str, list[RouteTracker]] = {
            service: [t for t in group if t.spec.enabled]
            for service, group in self.services.items()
        }
        #: Routes of each service currently kept in service as best-effort.
        self.best_effort_routes: dict[str, set[str]] = {
            service: {t.spec.route for t in group if t.best_effort}
            for service, group in self.services.items()
        }
        #: Nodes the config names: a heartbeat must come from one of them or name a route.
        self.nodes = frozenset(t.spec.node for t in trackers.values())

    def reconfigure(self, config: PathwatchConfig) -> Outputs:
        """Take a new config (`enforcer.reconfigure`): unchanged routes keep everything,
        changed ones resume from their last PathState with the new spec, new ones start
        unknown, removed ones are forgotten (alarms cleared, PathState deleted)."""
        now = self.clock()
        plan = plan_routes(self.trackers, self.previous, route_specs(config), self.clock)
        out = Outputs()
        for gone in plan.removed:
            key = gone.spec.key
            self.previous.pop(key, None)
            self.pending_metrics.pop(key, None)
            out.deleted_paths.append(key)
            out.publications.extend(
                alarm_publication(
                    gone.spec, tracked, AlarmNotice("cleared", raised, now, ROUTE_REMOVED, now)
                )
                for tracked, raised in raised_alarms(gone)
            )
        self.config = config
        self.silence_windows = self.liveness.silence_windows = config.enforcer.agent_silence_windows
        self._index(plan.trackers)
        for service in sorted({t.spec.service for t in plan.fresh}):
            fresh = {t: now for t in plan.fresh if t.spec.service == service}
            out.extend(self._settle(service, fresh, []))
        return out

    # --- helpers ------------------------------------------------------------

    def _agent_window(self, routes: frozenset[str], node: str) -> float:
        windows = [self.trackers[key].spec.window for key in routes if key in self.trackers]
        return max(windows, default=5.0)

    def _covered(self, heartbeat: AgentHeartbeat) -> frozenset[str]:
        listed = frozenset(key for key in heartbeat.routes if key in self.trackers)
        if listed:
            return listed
        on_node = frozenset(k for k, t in self.trackers.items() if t.spec.node == heartbeat.node)
        return on_node or frozenset(self.trackers)

    def path_states(self) -> list[PathState]:
        """Every route's PathState with current figures (pending metrics rebuilt)."""
        self.flush_metrics(self.clock(), force=True)
        return list(self.previous.values())

    def flush_metrics(
        self, now: float, force: bool = False, budget_seconds: float | None = None
    ) -> Outputs:
        """PathStates of routes whose figures moved and whose last one is old enough.

        With `budget_seconds`, stops once that much processor time was spent, oldest
        pending routes first; the rest wait for the next call. Figures then lag by a
        few ticks on very large deployments instead of one input stalling the others.
        """
        out = Outputs()
        pending = self.pending_metrics
        if not pending:
            return out
        refresh = self.metrics_refresh
        previous = self.previous
        trackers = self.trackers
        deadline = None if budget_seconds is None else time.perf_counter() + budget_seconds
        for done, key in enumerate(list(pending), start=1):
            last = previous.get(key)
            if force or last is None or now - last.updated >= refresh:
                del pending[key]
                tracker = trackers[key]
                state = tracker.snapshot(last.since if last is not None else now, now)
                previous[key] = state
                out.paths.append(state)
            if deadline is not None and done % 64 == 0 and time.perf_counter() >= deadline:
                break
        return out

    def spec(self, service: str, route: str) -> RouteSpec | None:
        tracker = self.trackers.get(f"{service}.{route}")
        return tracker.spec if tracker else None

    # --- inputs -----------------------------------------------------------------

    def restore(self, state: PathState) -> bool:
        """Resume a route from its PathState in KV; False when the route is not configured."""
        tracker = self.trackers.get(f"{state.service}.{state.route}")
        if tracker is None:
            return False
        tracker.restore(state)
        kept = self.best_effort_routes[tracker.spec.service]
        if tracker.best_effort:
            kept.add(tracker.spec.route)
        else:
            kept.discard(tracker.spec.route)
        self.previous[tracker.spec.key] = state
        return True

    def restore_agent_alarm(self, alarm: Alarm) -> None:
        """An agent-lost alarm raised before a restart, so its clear has the right id."""
        self.agents.restore(alarm)

    def _off_clock(self, ts: float, kind: str) -> bool:
        """True (and counted) when an event time is further than MAX_CLOCK_OFFSET_S from now."""
        if abs(ts - self.clock()) <= MAX_CLOCK_OFFSET_S:
            return False
        self.dropped[f"{kind}:clock"] += 1
        return True

    def on_window(self, window: WindowStats) -> Outputs:
        tracker = self.by_name.get(window.service, _NO_ROUTES).get(window.route)
        if tracker is None:
            self.dropped["stats:unknown-route"] += 1
            return Outputs()
        if self._off_clock(window.window_end, "stats"):
            return Outputs()
        changes = tracker.on_window(window)
        return self._after_window(tracker, window, changes)

    def on_window_payload(self, service: str, route: str, payload: bytes) -> Outputs:
        """A window as it arrives on `pw.stats.<service>.<route>` (JSON).

        When the route's next window may be quiet, it is decoded with the route's
        quiet decoder, which accepts it only if it is (the check runs inside the
        decoder); anything else is decoded as a plain WindowStats and judged by
        `on_window`. Raises DecodeError for a malformed payload.
        """
        tracker = self.by_name.get(service, _NO_ROUTES).get(route)
        decoder = tracker.quiet_decoder() if tracker is not None else None
        if tracker is not None and decoder is not None:
            try:
                window = decoder.decode(payload)
            except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
                pass  # not quiet, or not valid at all: the plain decode below tells
            else:
                if (
                    window.v == SCHEMA_VERSION
                    and window.service == service
                    and window.route == route
                ):
                    if tracker.take_decoded_quiet(window):
                        return self._after_window(tracker, window, [])
                    return self.on_window(window)
        return self.on_window(decode_message(payload, WindowStats))

    def _after_window(
        self, tracker: RouteTracker, window: WindowStats, changes: list[Change]
    ) -> Outputs:
        if tracker.quiet_taken and self._figures_only(tracker):
            # nothing but figures moved: the PathState is rebuilt by `flush_metrics`
            self.pending_metrics.setdefault(tracker.spec.key, window.window_end)
            return Outputs()
        return self._settle(tracker.spec.service, {tracker: window.window_end}, changes)

    def _figures_only(self, tracker: RouteTracker) -> bool:
        """Whether settling a quiet window of `tracker` could change nothing but figures:
        it is in service on its own (so no best-effort choice is open in its service)
        and its last PathState is current but for figures."""
        if not tracker.raw_in_service or self.best_effort_routes[tracker.spec.service]:
            return False
        previous = self.previous.get(tracker.spec.key)
        return previous is not None and tracker.unchanged_but_figures(previous)

    def on_fast(self, evidence: FastEvidence) -> Outputs:
        tracker = self.trackers.get(f"{evidence.service}.{evidence.route}")
        if tracker is None:
            self.dropped["fast:unknown-route"] += 1
            return Outputs()
        if self._off_clock(evidence.ts, "fast"):
            return Outputs()
        if len(evidence.detail) > MAX_TEXT_CHARS:
            evidence = msgspec.structs.replace(evidence, detail=clip(evidence.detail))
        changes = tracker.on_fast(evidence)
        if not changes:
            return Outputs()
        return self._settle(tracker.spec.service, {tracker: evidence.ts}, changes)

    def targets(self, state: ProbeState) -> list[RouteTracker]:
        """Routes a probe state applies to: one service route, or every route via an interface."""
        if state.service and state.route:
            tracker = self.trackers.get(f"{state.service}.{state.route}")
            return [tracker] if tracker else []
        return [
            t
            for t in self.trackers.values()
            if t.spec.node == state.node and t.spec.interface == state.interface
        ]

    def _usable_probe_state(self, state: ProbeState) -> ProbeState | None:
        """`state` with its reason clipped, or None (counted) when its times are absurd."""
        if state.set_at and self._off_clock(state.set_at, "probe-state"):
            return None
        if len(state.reason) > MAX_TEXT_CHARS:
            return msgspec.structs.replace(state, reason=clip(state.reason))
        return state

    def on_probe_state(self, key: str, state: ProbeState | None) -> Outputs:
        """A `pathwatch-probes` entry put (state) or deleted (None)."""
        now = self.clock()
        if state is not None:
            state = self._usable_probe_state(state)
            if state is None:
                return Outputs()
        if state is not None and state.expires_at is not None and state.expires_at <= now:
            state = None
        affected: dict[str, list[tuple[RouteTracker, list[Change]]]] = {}
        trackers = (
            self.targets(state)
            if state is not None
            else [t for t in self.trackers.values() if key in t.plugin_states]
        )
        for tracker in trackers:
            changes = tracker.set_plugin_state(key, state, now)
            affected.setdefault(tracker.spec.service, []).append((tracker, changes))
        out = Outputs()
        for service, items in affected.items():
            at = state.set_at if state is not None and state.set_at else now
            out.extend(
                self._settle(
                    service,
                    {tracker: at for tracker, _ in items},
                    [change for _, changes in items for change in changes],
                )
            )
        return out

    def on_heartbeat(self, heartbeat: AgentHeartbeat) -> Outputs:
        """A heartbeat (`enforcer.agent_alarms` says which are taken): may clear the
        agent's agent-lost alarm and make its routes fresh again."""
        if self._off_clock(heartbeat.ts, "heartbeat") or not self.agents.admit(
            heartbeat, self.nodes, self.trackers
        ):
            return Outputs()
        back, clears = self.agents.heard(heartbeat, self._covered(heartbeat))
        out = Outputs()
        out.publications.extend(clears)
        if back:
            out.extend(self._restale(heartbeat.ts))
        return out

    def tick(self, refresh_budget: float | None = None) -> Outputs:
        """Hold-down expiry, agent silence, window silence, probe-state TTL, then the
        pending metrics refresh (within `refresh_budget` seconds, see `flush_metrics`)."""
        now = self.clock()
        out = Outputs()
        out.publications.extend(self.agents.lost(now))
        for service, trackers in self.services.items():
            moved: dict[RouteTracker, float] = {}
            changes: list[Change] = []
            for tracker in trackers:
                was_stale = tracker.window_stale
                tracker_changes = tracker.tick(now, self.silence_windows)
                for key in tracker.expired_plugin_keys(now):
                    if key not in out.expired_probe_keys:
                        out.expired_probe_keys.append(key)
                    tracker_changes.extend(tracker.set_plugin_state(key, None, now))
                if tracker_changes or was_stale != tracker.window_stale:
                    changes.extend(tracker_changes)
                    moved[tracker] = max((c.transition.at for c in tracker_changes), default=now)
            if moved:
                out.extend(self._settle(service, moved, changes))
        out.extend(self._restale(now))
        out.extend(self.flush_metrics(now, budget_seconds=refresh_budget))
        return out

    def _restale(self, now: float) -> Outputs:
        stale_routes = self.liveness.stale_routes()
        out = Outputs()
        for service, trackers in self.services.items():
            moved = {
                t: now
                for t in trackers
                if t.stale != (t.window_stale or t.spec.key in stale_routes)
            }
            if moved:
                out.extend(self._settle(service, moved, []))
        return out

    # --- settle: alarms, best-effort, events, commands ------------------------

    def _settle(
        self, service: str, touched: dict[RouteTracker, float], changes: list[Change]
    ) -> Outputs:
        out = Outputs()
        for change in changes:
            if change.alarm is not None:
                spec = self.trackers[change.route].spec
                out.publications.append(alarm_publication(spec, change.tracked, change.alarm))
        for tracker in touched:
            tracker.evaluate()
        stale_routes = self.liveness.stale_routes()
        for tracker in touched:
            tracker.stale = tracker.window_stale or tracker.spec.key in stale_routes
        routes = self.services[service]
        enabled = self.enabled_routes[service]
        chosen: str | None = None
        kept = self.best_effort_routes[service]
        if (
            enabled
            and routes[0].spec.best_effort_allowed
            and (kept or not any(t.raw_in_service for t in enabled))
        ):
            chosen = best_effort_choice(
                [
                    Candidate(
                        t.spec.route,
                        t.quality,
                        t.spec.cost,
                        t.best_effort,
                        t.raw_in_service,
                        t.state == "up",
                    )
                    for t in enabled
                ]
            )
        if chosen is not None or kept:
            touched = dict(touched)
            for tracker in routes:
                wanted = tracker.spec.route == chosen
                if tracker.best_effort != wanted:
                    tracker.best_effort = wanted
                    if wanted:
                        kept.add(tracker.spec.route)
                    else:
                        kept.discard(tracker.spec.route)
                    touched.setdefault(tracker, max(touched.values(), default=self.clock()))
        now = self.clock()
        for tracker, at in touched.items():
            self._emit(tracker, at, now, out)
        return out

    def _emit(self, tracker: RouteTracker, at: float, now: float, out: Outputs) -> None:
        spec = tracker.spec
        key = spec.key
        previous = self.previous.get(key)
        if previous is not None and tracker.unchanged_but_figures(previous):
            # only figures moved: the PathState is rebuilt by `flush_metrics`
            self.pending_metrics.setdefault(key, at)
            return
        self.pending_metrics.pop(key, None)
        since = previous.since if previous and previous.state == tracker.state else at
        state = tracker.snapshot(since, now)
        self.previous[key] = state
        out.paths.append(state)
        out.publications.extend(route_messages(spec, previous, state, at))

    # --- selection ---------------------------------------------------------------

    def select(self, request: LbSelectRequest) -> LbSelectReply:
        """Selection on current figures (the service's pending metrics rebuilt first)."""
        pending = self.pending_metrics
        now = self.clock()
        states = [
            self.trackers[key].snapshot(state.since, now) if key in pending else state
            for key, state in self.previous.items()
        ]
        return select(states, request)
