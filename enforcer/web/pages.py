"""The status page's routes: overview `/`, route pages, alarms, their event
streams, and the history of a route as JSON (`/api/v1/history/...`, under the
API's own guard).

Errors a person can cause get a page saying why: an unknown service or route
404, a bad `span` or `lane` 400. A page request without the token goes to the
login form.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, get
from litestar.exceptions import HTTPException, NotAuthorizedException, NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Response, ServerSentEvent

from enforcer.api_backend import ApiBackend
from enforcer.history_reader import HistoryReader, RouteHistory
from enforcer.route_spec import RouteSpec
from enforcer.web.auth import login_redirect
from enforcer.web.charts import (
    DEFAULT_SPAN,
    SPANS,
    BadRequest,
    LaneId,
    chart_data,
    default_lane,
    lane_of,
    parse_lane,
    parse_span,
)
from enforcer.web.live import LiveHub
from enforcer.web.render import Renderer
from enforcer.web.views import active_by_route, alarm_lists, overview, route_row, sorted_lanes

_TITLES = {400: "Bad request", 401: "Not authorised", 403: "Forbidden", 404: "Not found"}


def error_page(renderer: Renderer) -> Any:
    """Exception handler of the page routes: a page for people, the login form when needed."""

    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        if isinstance(exc, NotAuthorizedException) and "text/html" in request.headers.get(
            "accept", ""
        ):
            return login_redirect(request)
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        title = _TITLES.get(status, "Error")
        return renderer.page("error.html", status=status, title=title, detail=detail)

    return handle


class StatusPages:
    """What the page handlers share: config routes, caches, the store, templates, live hub."""

    def __init__(
        self,
        specs: dict[tuple[str, str], RouteSpec],
        backend: ApiBackend,
        reader: HistoryReader,
        renderer: Renderer,
        hub: LiveHub,
    ) -> None:
        self.specs = specs
        self.backend = backend
        self.reader = reader
        self.renderer = renderer
        self.hub = hub

    def known(self, service: str, route: str) -> None:
        """NotFound unless the route is configured or has a state."""
        if (service, route) not in self.specs and f"{service}.{route}" not in self.backend.paths:
            raise NotFoundException(detail=f"unknown service route {service}/{route}"[:300])

    async def history(self, service: str, route: str, span: str) -> RouteHistory:
        self.known(service, route)
        try:
            span_s = parse_span(span)
        except BadRequest as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return await self.reader.route_history(service, route, span_s, time.time())

    def lane(self, lanes: list[LaneId], states: Any, slug: str | None) -> LaneId | None:
        if not slug:
            return default_lane(lanes, states)
        try:
            return parse_lane(slug, lanes)
        except BadRequest as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None


def page_handlers(pages: StatusPages, guard: Any, api_guard: Any) -> list[Any]:
    """The route handlers of the status page and of the history JSON."""
    backend, renderer, hub = pages.backend, pages.renderer, pages.hub

    @get("/", guards=[guard], sync_to_thread=False, include_in_schema=False)
    def overview_page() -> Response[str]:
        services = overview(pages.specs, backend.paths, backend.alarms.values())
        states = [row.shown for _, rows in services for row in rows]
        totals = {
            "routes": len(states),
            "up": states.count("up"),
            "down": states.count("down"),
            "other": len(states) - states.count("up") - states.count("down"),
            "alarms": sum(a.status == "raised" for a in backend.alarms.values()),
        }
        return renderer.page(
            "overview.html",
            services=services,
            totals=totals,
            nav="overview",
            events=f"/events/overview?since={hub.event_id}",
        )

    @get("/alarms", guards=[guard], sync_to_thread=False, include_in_schema=False)
    def alarms_page(q: FromQuery[str] = "") -> Response[str]:
        active, cleared = alarm_lists(backend.alarms.values())
        return renderer.page(
            "alarms.html",
            active=active,
            cleared=cleared,
            query=q[:200],
            nav="alarms",
            events="/events/alarms",
        )

    @get("/routes/{service:str}/{route:str}", guards=[guard], include_in_schema=False)
    async def route_page(
        service: FromPath[str],
        route: FromPath[str],
        span: FromQuery[str] = DEFAULT_SPAN,
        lane: FromQuery[str | None] = None,
    ) -> Response[str]:
        history = await pages.history(service, route, span)
        state = backend.paths.get(f"{service}.{route}")
        lanes = sorted_lanes(state)
        choices = sorted({lane_of(x) for x in lanes} | {lane_of(x) for x in history.rows})
        chosen = pages.lane(choices, lanes, lane)
        chart = chart_data(history, span, chosen, pages.specs.get((service, route)))
        active, cleared = alarm_lists(backend.alarms.values(), service, route)
        row = route_row(service, route, backend.paths, active_by_route(backend.alarms.values()))
        lane_query = f"?lane={chosen.slug}" if chosen is not None else ""
        return renderer.page(
            "route.html",
            row=row,
            lanes=lanes,
            chart=chart,
            lane_choices=choices,
            spans=SPANS,
            active=active,
            cleared=cleared,
            events=f"/events/routes/{service}/{route}{lane_query}",
        )

    @get("/events/overview", guards=[guard], sync_to_thread=False, include_in_schema=False)
    def overview_events(
        request: Request[Any, Any, Any], since: FromQuery[str] = ""
    ) -> ServerSentEvent:
        last = request.headers.get("last-event-id") or since
        return ServerSentEvent(hub.overview(last[:100]))

    @get("/events/alarms", guards=[guard], sync_to_thread=False, include_in_schema=False)
    def alarm_events() -> ServerSentEvent:
        return ServerSentEvent(hub.alarms())

    @get(
        "/events/routes/{service:str}/{route:str}",
        guards=[guard],
        sync_to_thread=False,
        include_in_schema=False,
    )
    def route_events(
        service: FromPath[str], route: FromPath[str], lane: FromQuery[str] = ""
    ) -> ServerSentEvent:
        pages.known(service, route)
        return ServerSentEvent(hub.route(service, route, lane[:1000]))

    @get("/api/v1/history/{service:str}/{route:str}", guards=[api_guard])
    async def route_history(
        service: FromPath[str], route: FromPath[str], span: FromQuery[str] = DEFAULT_SPAN
    ) -> RouteHistory:
        """Windows of every lane of a route, its transitions and alarms over `span`
        (15m, 1h, 24h, 7d), from the SQLite store: what the route page plots."""
        return await pages.history(service, route, span)

    return [
        overview_page,
        alarms_page,
        route_page,
        overview_events,
        alarm_events,
        route_events,
        route_history,
    ]
