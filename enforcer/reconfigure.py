"""A new config for a running enforcer: which routes keep their trackers (`Engine.reconfigure`;
docs/fleet-config.md, "The enforcer").

A route whose spec did not change keeps its tracker, so everything it knows (state,
hold-down, raised alarms, figures, the windows it has judged). A changed route (new
limits, probes, window, hold-down, next hop ...) gets a new tracker resumed from its last
PathState, as after a restart: its state, hold-down, raised alarms and best-effort
choice are kept, and its next window is judged by the new spec. A new route starts
unknown. A removed route is forgotten: the engine clears its raised alarms and deletes
its PathState from KV.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from enforcer.route_spec import RouteSpec
from enforcer.route_tracker import RouteTracker, Tracked
from enforcer.state_machine import Clock
from schemas.wire import PathState

#: The reason of an alarm cleared because its route left the config.
ROUTE_REMOVED = "route removed from the config"


@dataclass
class RoutePlan:
    """The trackers of the new config, the ones made for it, and the ones dropped."""

    trackers: dict[str, RouteTracker] = field(default_factory=dict)
    #: new trackers (new routes, and changed ones resumed from their PathState)
    fresh: list[RouteTracker] = field(default_factory=list)
    removed: list[RouteTracker] = field(default_factory=list)


def plan_routes(
    current: dict[str, RouteTracker],
    previous: dict[str, PathState],
    specs: list[RouteSpec],
    clock: Clock,
) -> RoutePlan:
    """Trackers for `specs`: `current` ones whose spec is the same are kept; others are
    new, resumed from `previous` (their last PathState) when they have one."""
    plan = RoutePlan()
    left = dict(current)
    for spec in specs:
        kept = left.pop(spec.key, None)
        if kept is not None and kept.spec == spec:
            plan.trackers[spec.key] = kept
            continue
        tracker = RouteTracker(spec, clock)
        last = previous.get(spec.key)
        if last is not None:
            tracker.restore(last)
        plan.trackers[spec.key] = tracker
        plan.fresh.append(tracker)
    plan.removed = list(left.values())
    return plan


def raised_alarms(tracker: RouteTracker) -> Iterator[tuple[Tracked, float]]:
    """The machines of `tracker` with a raised alarm, and when it was raised."""
    for tracked in tracker.all_tracked():
        raised_at = tracked.machine.track.alarm_raised_at
        if tracked.enforced and raised_at is not None:
            yield tracked, raised_at
