"""Choosing routes: the best-effort survivor of a dead service and load-balancer selection.

Best-effort: when no route of a service is in service, the one with the best
quality (then the lowest cost, then the name) stays in service, and keeps
that role until another route is known to be better: in service on its own
and `up`. A route merely back on probation (or unknown) is no such proof, so
a probation expiry never moves the best-effort choice from one dead route to
another (issue 21: the router replaced the route twice within 20 ms).

Load balancing ranks in-service routes by `preference` (the one ordering rule
of both `pw.lb.select` and `show load-balancer`, docs/cli.md): Meets-SLA (of
the asked protocol / class when given), then not best-effort, then state (up,
probation, unknown), then cost, then quality in bands of `QUALITY_BAND`
points, then name. Cost comes before quality because every route that meets
its SLA is good enough, so the operator's cost decides; quality counts only in
bands so that sub-millisecond latency noise never reorders two routes.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.wire import LbSelectReply, LbSelectRequest, PathState


@dataclass(frozen=True)
class Candidate:
    """What best-effort selection needs to know about one route."""

    route: str
    quality: float
    cost: int
    #: Kept in service as best effort now.
    current: bool
    #: In service on its own (not as best effort).
    in_service: bool = False
    #: Judged up (not merely on probation or unknown).
    up: bool = False


def best_effort_choice(candidates: Sequence[Candidate]) -> str | None:
    """The route to keep in service as best effort, None when none is needed.

    None once a route is in service and up; else the current best-effort route
    (sticky); else, when no route is in service, the best by quality, then cost,
    then name.
    """
    if any(c.in_service and c.up for c in candidates):
        return None
    for candidate in candidates:
        if candidate.current:
            return candidate.route
    if not candidates or any(c.in_service for c in candidates):
        return None
    return min(candidates, key=lambda c: (-c.quality, c.cost, c.route)).route


_STATE_RANK = {"up": 0, "probation": 1, "unknown": 2, "down": 3}


def _lane_meets(state: PathState, request: LbSelectRequest) -> bool:
    if request.protocol is None and request.traffic_class is None:
        return state.meets_sla
    lanes = [
        lane
        for lane in state.lanes
        if not lane.probe
        and not lane.destination
        and (request.protocol is None or lane.protocol == request.protocol)
        and (request.traffic_class is None or lane.traffic_class == request.traffic_class)
    ]
    if not lanes:
        return state.meets_sla
    return all(lane.meets_sla for lane in lanes) and state.state != "down"


#: Width of the quality bands routes are compared in (quality runs 0-100; 90-100 is one band).
QUALITY_BAND = 10.0
_TOP_BAND = int(100 // QUALITY_BAND) - 1


def quality_band(quality: float) -> int:
    """0 for quality below QUALITY_BAND, ... up to the top band, which includes 100."""
    return min(int(quality // QUALITY_BAND), _TOP_BAND)


def preference(state: PathState, request: LbSelectRequest) -> tuple[bool, bool, int, int, int, str]:
    """Sort key of the load balancer's choice, lower is better (see the module docstring)."""
    return (
        not _lane_meets(state, request),
        state.best_effort,
        _STATE_RANK[state.state],
        state.cost,
        -quality_band(state.quality),
        state.route,
    )


def rank(states: Sequence[PathState], request: LbSelectRequest) -> list[PathState]:
    """In-service, non-excluded routes of the request's service, best first."""
    usable = [
        s
        for s in states
        if s.service == request.service and s.in_service and s.route not in request.exclude
    ]
    return sorted(usable, key=lambda s: preference(s, request))


def select(states: Sequence[PathState], request: LbSelectRequest) -> LbSelectReply:
    """Answer a load-balancer request from the current path states."""
    known = [s for s in states if s.service == request.service]
    if not known:
        return LbSelectReply(
            service=request.service, route=None, error=f"unknown service {request.service!r}"
        )
    ranked = rank(known, request)
    if not ranked:
        return LbSelectReply(
            service=request.service,
            route=None,
            reason="no route in service"
            + (f" outside {sorted(request.exclude)}" if request.exclude else ""),
        )
    best = ranked[0]
    return LbSelectReply(
        service=best.service,
        route=best.route,
        state=best.state,
        best_effort=best.best_effort,
        node=best.node,
        interface=best.interface,
        gateway=best.gateway,
        reason=best.reason,
    )
