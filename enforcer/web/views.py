"""What each page lists, from the API's live caches (path states and alarms):
plain data for the templates, no markup."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from schemas.wire import Alarm, LaneState, PathState

#: Cleared alarms the alarms page lists, newest first.
RECENT_ALARMS = 200


@dataclass(frozen=True, slots=True)
class RouteRow:
    """One route of the overview; `state` is None until the enforcer wrote one."""

    service: str
    route: str
    state: PathState | None
    active_alarms: int

    @property
    def key(self) -> str:
        return f"{self.service}.{self.route}"

    @property
    def shown(self) -> str:
        """The state as shown: `stale` when the data behind it stopped coming."""
        if self.state is None:
            return "no state"
        return "stale" if self.state.stale else self.state.state


def active_by_route(alarms: Iterable[Alarm]) -> Counter[str]:
    return Counter(f"{a.service}.{a.route}" for a in alarms if a.status == "raised")


def route_row(
    service: str, route: str, paths: dict[str, PathState], active: Counter[str]
) -> RouteRow:
    key = f"{service}.{route}"
    return RouteRow(service, route, paths.get(key), active[key])


def overview(
    configured: Iterable[tuple[str, str]], paths: dict[str, PathState], alarms: Iterable[Alarm]
) -> list[tuple[str, list[RouteRow]]]:
    """Every service with its routes: the configured ones and any others with a state."""
    active = active_by_route(alarms)
    names = dict.fromkeys(configured)
    names.update(dict.fromkeys((s.service, s.route) for s in paths.values()))
    services: dict[str, list[RouteRow]] = {}
    for service, route in sorted(names):
        services.setdefault(service, []).append(route_row(service, route, paths, active))
    return list(services.items())


def sorted_lanes(state: PathState | None) -> list[LaneState]:
    """Lanes in the order of `show service-path`."""
    if state is None:
        return []
    return sorted(
        state.lanes,
        key=lambda lane: (
            lane.traffic_class,
            lane.protocol,
            lane.source,
            lane.probe,
            lane.destination,
        ),
    )


def alarm_lists(
    alarms: Iterable[Alarm], service: str | None = None, route: str | None = None
) -> tuple[list[Alarm], list[Alarm]]:
    """(active newest first, recently cleared newest first), optionally of one route."""
    mine = [
        a
        for a in alarms
        if (service is None or a.service == service) and (route is None or a.route == route)
    ]
    active = sorted((a for a in mine if a.status == "raised"), key=lambda a: -a.raised_at)
    cleared = sorted(
        (a for a in mine if a.status == "cleared"), key=lambda a: -(a.cleared_at or a.raised_at)
    )
    return active, cleared[:RECENT_ALARMS]
