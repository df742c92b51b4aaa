"""Rows of `show load-balancer`: the router's columns from path states.

Loss, latency and jitter are the worst over the route's aggregate lanes with
data, MOS the lowest; rows are ranked as load balancing would pick them.
"""

import msgspec

from enforcer.selection import rank
from schemas.wire import LbSelectRequest, PathState


class LoadBalancerRow(msgspec.Struct, frozen=True, kw_only=True):
    service: str
    route: str
    type: str
    quality: float
    cost: int
    state: str
    in_service: bool
    best_effort: bool
    loss_pct: float | None
    latency_ms: float | None
    jitter_ms: float | None
    mos: float | None
    meets_sla: bool
    node: str
    interface: str
    gateway: str | None


def _worst(values: list[float | None], lowest: bool = False) -> float | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return round(min(present) if lowest else max(present), 2)


def row(state: PathState) -> LoadBalancerRow:
    metrics = [
        lane.metrics
        for lane in state.lanes
        if lane.metrics is not None and lane.metrics.count > 0 and not lane.destination
    ]
    kind = "best-effort" if state.best_effort else ("gateway" if state.gateway else "interface")
    return LoadBalancerRow(
        service=state.service,
        route=state.route,
        type=kind,
        quality=state.quality,
        cost=state.cost,
        state="stale" if state.stale else state.state,
        in_service=state.in_service,
        best_effort=state.best_effort,
        loss_pct=_worst([m.loss_pct for m in metrics]),
        latency_ms=_worst([m.latency_mean_ms for m in metrics]),
        jitter_ms=_worst([m.jitter_ms for m in metrics]),
        mos=_worst([m.mos for m in metrics], lowest=True),
        meets_sla=state.meets_sla,
        node=state.node,
        interface=state.interface,
        gateway=state.gateway,
    )


def load_balancer_rows(
    states: list[PathState], service: str | None = None
) -> list[LoadBalancerRow]:
    services = sorted({s.service for s in states if service is None or s.service == service})
    rows: list[LoadBalancerRow] = []
    for name in services:
        mine = [s for s in states if s.service == name]
        ranked = rank(mine, LbSelectRequest(service=name))
        rest = sorted((s for s in mine if s not in ranked), key=lambda s: (s.cost, s.route))
        rows.extend(row(s) for s in [*ranked, *rest])
    return rows
