"""Choosing a new route: the enforcer's load balancer first, a local best-effort choice second.

`pw.lb.select.<service>` is asked for the best route excluding the failed
one. When nobody answers in time (NATS or the enforcer is down: both planes
down) the healer chooses locally among the service's other routes: the ones
its monitor does not report down, cheapest first (config order on ties),
and only if none is left, any other route (best-effort).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors

from pathwatch.runtime.bus import Bus
from schemas import subjects
from schemas.codec import DecodeError, decode_message, encode
from schemas.config import Service
from schemas.wire import LbSelectReply, LbSelectRequest

log = logging.getLogger("pathwatch.healer")


@dataclass(frozen=True)
class Selection:
    """The chosen route (None: nothing usable), how it was chosen, and why."""

    route: str | None
    source: str
    reason: str = ""
    best_effort: bool = False


def local_choice(
    service: Service, exclude: set[str], reported_down: Callable[[str], bool]
) -> Selection:
    """Cheapest other route not reported down; else any other route as best-effort."""
    order = list(service.service_routes)
    candidates = [name for name in order if name not in exclude]
    if not candidates:
        return Selection(None, "local", "no other route")

    def key(name: str) -> tuple[int, int]:
        return service.service_routes[name].cost, order.index(name)

    healthy = [name for name in candidates if not reported_down(name)]
    if healthy:
        return Selection(min(healthy, key=key), "local", "load balancer unreachable")
    return Selection(min(candidates, key=key), "local", "every other route down", best_effort=True)


async def ask_load_balancer(
    bus: Bus, service: str, exclude: list[str], timeout: float
) -> Selection | None:
    """The load balancer's answer, or None when it cannot be asked or does not answer."""
    if not bus.nc.is_connected:
        return None
    request = LbSelectRequest(service=service, exclude=exclude)
    try:
        message = await bus.nc.request(
            subjects.lb_select(service), encode(request), timeout=timeout
        )
    except (nats.errors.Error, TimeoutError, OSError) as exc:
        log.info("healer: load balancer of %s did not answer: %s", service, exc)
        return None
    try:
        reply = decode_message(message.data, LbSelectReply)
    except DecodeError as exc:
        log.warning("healer: malformed load-balancer reply: %s", exc)
        return None
    if reply.error:
        log.warning("healer: load balancer refused: %s", reply.error)
        return None
    return Selection(reply.route, "load-balancer", reply.reason, reply.best_effort)
