"""Tumbling windows per route, aligned to multiples of the detection-window by event time.

A measurement with timestamp `ts` belongs to window `floor(ts / W)` of its
route (W = detection-window). The window closes at `end + allowed lateness`
by the aggregator's clock (the `now` passed in, so tests inject it); a
measurement that arrives for a window whose close time has passed is late,
counted and dropped. Timestamps more than `max_future` ahead of `now` are
dropped as future.

Between its end and its close (the lateness grace) a window is *ripened*
(`WindowBook.ripen_due`): its lanes are worked out ahead, so the close at the
deadline only wraps them. A late measurement that still arrives in the grace
drops the ripened lanes and the close works them out again.

Hot path: `RouteWindows.add` folds every measurement into the compact
accumulator of its fine lane (`aggregator.lanes.LaneAccumulator`: 16 bytes per
`ok` latency, outcome counts) and keeps no reference to the decoded structs, so
memory stays small; closing sorts the latencies and works out jitter.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field

from aggregator.fastpath import FailureRun, FailureRuns
from aggregator.lanes import LaneAccumulator, window_lanes
from schemas.limits import MAX_UNLISTED_LANES, MAX_WINDOW_AGENTS
from schemas.wire import Lane, LaneStats, Measurement, WindowStats


@dataclass(frozen=True)
class RouteWindowing:
    """What the aggregator needs to know about one configured route."""

    service: str
    route: str
    window_s: float
    lateness_s: float
    consecutive_failures: int = 3
    tracked: frozenset[str] = frozenset()
    #: probe names and destinations the config names for the route ("" included;
    #: tracked destinations count as named): a window keeps at most
    #: MAX_UNLISTED_LANES fine lanes with any other
    listed_probes: frozenset[str] = frozenset({""})
    listed_destinations: frozenset[str] = frozenset({""})
    #: probes whose agent confirms failures itself (schemas.fastdetect)
    agent_confirmed: frozenset[str] = frozenset()


def _failure_runs(spec: RouteWindowing) -> FailureRuns | None:
    """The consecutive-failure counting of a route (None: the fast path is off)."""
    if not spec.consecutive_failures:
        return None
    return FailureRuns(spec.consecutive_failures, spec.agent_confirmed)


def default_lateness(window_s: float) -> float:
    """The default allowed lateness: the smaller of 1 s and half the window."""
    return min(1.0, window_s / 2.0)


class Window:
    """The measurements of one route in one window, per fine lane."""

    __slots__ = ("agents", "end", "fine", "index", "ripe_lanes", "start", "unlisted")

    def __init__(self, index: int, start: float, end: float) -> None:
        self.index = index
        self.start = start
        self.end = end
        self.fine: dict[Lane, LaneAccumulator] = {}
        #: fine lanes whose probe or destination the config does not name
        self.unlisted = 0
        self.agents: set[str] = set()
        #: the lanes worked out after the window ended (`RouteWindows.ripen`);
        #: None until then, and again once a late measurement arrives
        self.ripe_lanes: list[LaneStats] | None = None


@dataclass
class AddResult:
    """What happened to the items of one batch."""

    accepted: int = 0
    late: int = 0
    future: int = 0
    #: accepted into the aggregate lane only: their own lane would pass MAX_UNLISTED_LANES
    folded: int = 0
    failure_runs: list[FailureRun] = field(default_factory=list)


@dataclass
class Reconfigured:
    """What `WindowBook.reconfigure` did: routes by (service, route), windows dropped."""

    added: list[tuple[str, str]] = field(default_factory=list)
    changed: list[tuple[str, str]] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)
    dropped_windows: int = 0


#: creation order of windows: ties in close time close in the order windows opened
_creation_order = itertools.count()

#: (close time or end time, creation order, route windows, window index)
Deadline = tuple[float, int, "RouteWindows", int]


class RouteWindows:
    """Open windows and fast-path state of one route."""

    __slots__ = (
        "_cached",
        "_deadlines",
        "_endings",
        "_listed_destinations",
        "duplicates",
        "late",
        "runs",
        "spec",
        "windows",
    )

    def __init__(
        self, spec: RouteWindowing, deadlines: list[Deadline], endings: list[Deadline]
    ) -> None:
        self.spec = spec
        self.windows: dict[int, Window] = {}
        self.runs = _failure_runs(spec)
        self.late = 0
        self.duplicates = 0
        self._cached: Window | None = None
        self._deadlines = deadlines
        self._endings = endings
        self._listed_destinations = spec.listed_destinations | spec.tracked

    def _window_for(self, ts: float, now: float) -> Window | None:
        width = self.spec.window_s
        index = math.floor(ts / width)
        window = self.windows.get(index)
        if window is not None:
            return window
        end = (index + 1) * width
        close_at = end + self.spec.lateness_s
        if close_at <= now:
            return None
        window = Window(index, index * width, end)
        self.windows[index] = window
        order = next(_creation_order)
        heapq.heappush(self._deadlines, (close_at, order, self, index))
        heapq.heappush(self._endings, (end, order, self, index))
        return window

    def add(self, agent: str, items: list[Measurement], now: float, max_future: float) -> AddResult:
        """Add the items of one batch; late and future items are counted, not kept."""
        result = AddResult()
        horizon = now + max_future
        lateness = self.spec.lateness_s
        current = self._cached
        if current is not None and current.end + lateness <= now:
            current = None
        start = current.start if current is not None else 0.0
        # one comparison per item: below `limit` an item is in the current window
        # and not in the future
        limit = min(current.end, horizon) if current is not None else 0.0
        runs = self.runs
        # FailureRuns.runs (never replaced), read once: successes end runs inline below
        run_lengths = runs.runs if runs is not None else None
        fine: dict[Lane, LaneAccumulator] = current.fine if current is not None else {}
        listed_probes = self.spec.listed_probes
        listed_destinations = self._listed_destinations
        touched: set[Window] = set()
        for m in items:
            ts = m.ts
            if not start <= ts < limit:
                if ts > horizon:
                    result.future += 1
                    continue
                found = self._window_for(ts, now)
                if found is None:
                    result.late += 1
                    continue
                if current is not None:
                    touched.add(current)
                current = found
                start, limit = found.start, min(found.end, horizon)
                fine = found.fine
            # the lane's fields as a plain tuple: equal to the Lane and hashed alike, and
            # ten times cheaper to build; a Lane is built only for a new lane (below)
            key: Lane = (m.protocol, m.traffic_class, m.source, m.destination, m.probe)  # type: ignore[assignment]
            lane = fine.get(key)
            if lane is None:
                if m.probe not in listed_probes or m.destination not in listed_destinations:
                    if current.unlisted >= MAX_UNLISTED_LANES:  # type: ignore[union-attr]
                        result.folded += 1
                        key = (m.protocol, m.traffic_class, m.source, "", "")  # type: ignore[assignment]
                        lane = fine.get(key)
                    else:
                        current.unlisted += 1  # type: ignore[union-attr]
                if lane is None:
                    lane = fine[Lane(*key)] = LaneAccumulator()
            outcome = m.outcome
            if outcome == "ok":
                latency = m.latency_ms
                if latency is not None:
                    # LaneAccumulator.add_latency, inlined
                    lane.times.append(ts)
                    lane.latencies.append(latency)
                else:
                    lane.add_other(outcome)
                if run_lengths:
                    # FailureRuns.success, inlined
                    run_lengths.pop(key, None)
            else:
                lane.add_other(outcome)
                if runs is not None:
                    run = runs.failure(key, outcome)
                    if run is not None:
                        result.failure_runs.append(run)
        # every item is future, late or accepted
        result.accepted = len(items) - result.late - result.future
        if current is not None and result.accepted:
            touched.add(current)
            for window in touched:
                if len(window.agents) < MAX_WINDOW_AGENTS:
                    window.agents.add(agent)
                window.ripe_lanes = None
        self._cached = current
        self.late += result.late
        return result

    def ripen(self, index: int) -> bool:
        """Work out the lanes of window `index` ahead of its close; False when it is
        already closed."""
        window = self.windows.get(index)
        if window is None:
            return False
        if window.ripe_lanes is None:
            window.ripe_lanes = window_lanes(window.fine, self.spec.tracked)
        return True

    def respec(self, spec: RouteWindowing) -> None:
        """Take a changed spec of the same window width and lateness, keeping the open
        windows (failure runs start over when their threshold or probes changed)."""
        old = self.spec
        if (spec.consecutive_failures, spec.agent_confirmed) != (
            old.consecutive_failures,
            old.agent_confirmed,
        ):
            self.runs = _failure_runs(spec)
        self.spec = spec
        self._listed_destinations = spec.listed_destinations | spec.tracked

    def drop_windows(self) -> int:
        """Forget the open windows (their deadlines find nothing); returns how many."""
        dropped = len(self.windows)
        self.windows.clear()
        self._cached = None
        return dropped

    def close(self, index: int) -> WindowStats | None:
        """Close window `index`; None when it had no measurements (or is already closed)."""
        window = self.windows.pop(index, None)
        if window is None:
            return None
        if self._cached is window:
            self._cached = None
        lanes = window.ripe_lanes
        if lanes is None:
            lanes = window_lanes(window.fine, self.spec.tracked)
        if not lanes:
            return None
        stats = WindowStats(
            service=self.spec.service,
            route=self.spec.route,
            window_start=window.start,
            window_end=window.end,
            lanes=lanes,
            agents=sorted(window.agents),
            late=self.late,
            duplicates=self.duplicates,
        )
        self.late = 0
        self.duplicates = 0
        return stats


class WindowBook:
    """The windows of every configured route and their close times."""

    def __init__(self, specs: list[RouteWindowing]) -> None:
        self._deadlines: list[Deadline] = []
        self._endings: list[Deadline] = []
        self.routes: dict[tuple[str, str], RouteWindows] = {
            (spec.service, spec.route): RouteWindows(spec, self._deadlines, self._endings)
            for spec in specs
        }

    def reconfigure(self, specs: list[RouteWindowing]) -> Reconfigured:
        """Take a new set of routes: an unchanged route keeps its windows, and so does a
        changed one whose window width and lateness stay (it takes the new spec); a new
        one, or one with a new width or lateness, starts with new windows (the open ones
        of the old width are dropped); a removed one stops (its open windows are
        dropped, so no window of a route no longer configured is published)."""
        old = self.routes
        self.routes = {}
        done = Reconfigured()
        for spec in specs:
            key = (spec.service, spec.route)
            kept = old.pop(key, None)
            if kept is not None and kept.spec == spec:
                self.routes[key] = kept
                continue
            if kept is not None:
                done.changed.append(key)
                if (kept.spec.window_s, kept.spec.lateness_s) == (spec.window_s, spec.lateness_s):
                    kept.respec(spec)
                    self.routes[key] = kept
                    continue
                done.dropped_windows += kept.drop_windows()
            else:
                done.added.append(key)
            self.routes[key] = RouteWindows(spec, self._deadlines, self._endings)
        for key, gone in old.items():
            done.removed.append(key)
            done.dropped_windows += gone.drop_windows()
        return done

    def route(self, service: str, route: str) -> RouteWindows | None:
        return self.routes.get((service, route))

    def open_windows(self) -> int:
        return len(self._deadlines)

    def next_close(self) -> float | None:
        return self._deadlines[0][0] if self._deadlines else None

    def close_due(self, now: float, limit: int | None = None) -> list[WindowStats]:
        """Close the windows whose close time is at or before `now`, oldest first
        (at most `limit` of them, so a caller can interleave other work)."""
        closed: list[WindowStats] = []
        deadlines = self._deadlines
        budget = len(deadlines) if limit is None else limit
        while deadlines and deadlines[0][0] <= now and budget > 0:
            budget -= 1
            _, _, route_windows, index = heapq.heappop(deadlines)
            stats = route_windows.close(index)
            if stats is not None:
                closed.append(stats)
        # end times of windows closed without being ripened: dropped here, so the
        # heap stays as small as the open windows when nobody calls ripen_due
        endings = self._endings
        while endings and endings[0][3] not in endings[0][2].windows:
            heapq.heappop(endings)
        return closed

    def ripen_due(self, now: float, limit: int | None = None) -> int:
        """Ripen the windows that ended at or before `now` and are still open, oldest
        first (at most `limit` of them); returns how many were looked at, 0 when none
        is left."""
        endings = self._endings
        budget = len(endings) if limit is None else limit
        looked_at = 0
        while endings and endings[0][0] <= now and looked_at < budget:
            looked_at += 1
            _, _, route_windows, index = heapq.heappop(endings)
            route_windows.ripen(index)
        return looked_at
