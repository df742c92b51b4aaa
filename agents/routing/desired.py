"""Desired kernel routes of one node: a pure function of config, path states and mode.

For every service with a route whose next hop is on the node, each of the service's
prefixes (`services.<s>.address`) routes over the node's usable next hops:

* a route is usable when its `PathState` is in service or best-effort, or when it has
  no `PathState` yet (unknown counts as in service);
* when no route of the service is usable on any node and no `PathState` marks one as
  best-effort while the service policy allows best-effort, the cheapest route of the
  service (by cost, then config order) is kept as the local best-effort choice, so every
  router picks the same one;
* `ecmp` mode spreads over every usable next hop with a kernel weight from its cost
  (`ecmp_weight`); `best` mode keeps only the cheapest (cost, then config order).

Nothing here touches the kernel or the network.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from schemas.config import PathwatchConfig, Service, ServiceRoute
from schemas.subjects import path_key
from schemas.wire import PathState

RouterMode = Literal["ecmp", "best"]

#: Largest kernel next-hop weight (rtnh_hops + 1).
MAX_WEIGHT = 256


@dataclass(frozen=True)
class DesiredHop:
    """One next hop of a desired route; `weight` is the kernel weight (1..256)."""

    interface: str | None
    gateway: str | None
    weight: int
    route_key: str
    best_effort: bool = False


@dataclass(frozen=True)
class DesiredRoute:
    """A prefix and the next hops it should use, heaviest first."""

    prefix: str
    hops: tuple[DesiredHop, ...]


@dataclass(frozen=True)
class DesiredState:
    """Every desired route of the node by prefix, and the config problems met on the way."""

    routes: dict[str, DesiredRoute] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Candidate:
    route_key: str
    order: int
    cost: int
    interface: str | None
    gateway: str | None
    best_effort: bool


def ecmp_weight(cost: int, cheapest_cost: int) -> int:
    """Kernel weight of a next hop: inversely proportional to its cost.

    The cheapest next hop gets 256; one that costs twice as much gets 128 (half the
    flows), and so on, never below 1. A cost of 0 counts as 1.
    """
    share = max(cheapest_cost, 1) / max(cost, 1)
    return max(1, min(MAX_WEIGHT, round(MAX_WEIGHT * share)))


def route_usable(state: PathState | None) -> bool:
    """A route carries traffic when in service or best-effort; unknown counts as usable."""
    return state is None or state.in_service or state.best_effort


def normalise_prefix(text: str) -> str:
    """`127.0.0.7` -> `127.0.0.7/32`, `127.1.2.9/24` -> `127.1.2.0/24`."""
    return str(ipaddress.ip_network(text, strict=False))


def _fallback_route(service: Service) -> str | None:
    """The route kept as best-effort when nothing of the service is usable: cheapest first."""
    if not service.service_routes:
        return None
    order = list(service.service_routes)
    return min(order, key=lambda name: (service.service_routes[name].cost, order.index(name)))


def _service_candidates(
    service_name: str,
    service: Service,
    node: str,
    states: Mapping[str, PathState],
) -> list[_Candidate]:
    """The usable routes of one service whose next hop is on `node`."""
    usable = {
        name: route_usable(states.get(path_key(service_name, name)))
        for name in service.service_routes
    }
    marked_best_effort = any(
        state.best_effort
        for name in service.service_routes
        if (state := states.get(path_key(service_name, name))) is not None
    )
    fallback: str | None = None
    if not any(usable.values()) and not marked_best_effort and service.service_policy.best_effort:
        fallback = _fallback_route(service)
    candidates: list[_Candidate] = []
    for order, (route_name, route) in enumerate(service.service_routes.items()):
        if route.next_hop.node != node:
            continue
        if not usable[route_name] and route_name != fallback:
            continue
        state = states.get(path_key(service_name, route_name))
        best_effort = route_name == fallback or (state is not None and state.best_effort)
        candidates.append(_candidate(service_name, route_name, order, route, best_effort))
    return candidates


def _candidate(
    service_name: str, route_name: str, order: int, route: ServiceRoute, best_effort: bool
) -> _Candidate:
    return _Candidate(
        route_key=path_key(service_name, route_name),
        order=order,
        cost=route.cost,
        interface=route.next_hop.interface,
        gateway=route.next_hop.gateway_ip,
        best_effort=best_effort,
    )


def _hop_fits(candidate: _Candidate, prefix: str) -> str | None:
    """Why this next hop cannot serve `prefix`, or None when it can."""
    if candidate.interface is None and candidate.gateway is None:
        return f"{candidate.route_key}: next-hop has neither interface nor gateway-ip"
    if candidate.gateway is not None:
        gateway_version = ipaddress.ip_address(candidate.gateway).version
        if gateway_version != ipaddress.ip_network(prefix).version:
            return (
                f"{candidate.route_key}: gateway {candidate.gateway} is IPv{gateway_version},"
                f" prefix {prefix} is not"
            )
    return None


def _choose(candidates: list[_Candidate], mode: RouterMode) -> list[DesiredHop]:
    """The next hops of one prefix for the mode, deduplicated, heaviest first."""
    if not candidates:
        return []
    if mode == "best":
        best = min(candidates, key=lambda c: (c.cost, c.order, c.route_key))
        return [
            DesiredHop(best.interface, best.gateway, MAX_WEIGHT, best.route_key, best.best_effort)
        ]
    cheapest = min(c.cost for c in candidates)
    hops: dict[tuple[str | None, str | None], DesiredHop] = {}
    for candidate in sorted(candidates, key=lambda c: (c.cost, c.order, c.route_key)):
        identity = (candidate.interface, candidate.gateway)
        if identity in hops:
            continue  # the cheaper route to the same next hop already set its weight
        hops[identity] = DesiredHop(
            candidate.interface,
            candidate.gateway,
            ecmp_weight(candidate.cost, cheapest),
            candidate.route_key,
            candidate.best_effort,
        )
    return list(hops.values())


def desired_routes(
    config: PathwatchConfig,
    node: str,
    states: Mapping[str, PathState],
    mode: RouterMode | None = None,
) -> DesiredState:
    """The routes `node` should have; `states` maps `<service>.<route>` to its PathState."""
    chosen_mode: RouterMode = mode or config.router.mode
    per_prefix: dict[str, list[_Candidate]] = {}
    problems: list[str] = []
    for service_name, service in config.services.items():
        if not any(r.next_hop.node == node for r in service.service_routes.values()):
            continue
        candidates = _service_candidates(service_name, service, node, states)
        for address in service.address:
            prefix = normalise_prefix(address)
            bucket = per_prefix.setdefault(prefix, [])
            for candidate in candidates:
                problem = _hop_fits(candidate, prefix)
                if problem is None:
                    bucket.append(candidate)
                elif problem not in problems:
                    problems.append(problem)
    routes: dict[str, DesiredRoute] = {}
    for prefix, candidates in per_prefix.items():
        hops = _choose(candidates, chosen_mode)
        if hops:
            routes[prefix] = DesiredRoute(prefix, tuple(hops))
    return DesiredState(routes, tuple(problems))
