"""The live status page served by the API process (docs/ui.md): overview, route
pages with charts from the history store, alarms, live updates by server-sent
events. Its script, styles and the vendored chart library ship in `static/`.

`status_page(...)` returns the route handlers that `enforcer.api.create_app`
adds to the API's application. The routes listed and the token asked for follow
the API's settings (`enforcer.api_settings`) when a new config revision arrives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Router
from litestar.exceptions import HTTPException
from litestar.static_files import create_static_files_router

from enforcer.api_backend import ApiBackend
from enforcer.api_settings import ApiSettings, CurrentSettings
from enforcer.history_reader import HistoryReader
from enforcer.web.auth import login_handlers, page_guard
from enforcer.web.live import LiveHub
from enforcer.web.pages import StatusPages, error_page, page_handlers
from enforcer.web.render import Renderer
from schemas.config import StoreConfig

STATIC = Path(__file__).parent / "static"


def status_page(
    settings: CurrentSettings, store: StoreConfig, backend: ApiBackend, api_guard: Any
) -> list[Any]:
    """Handlers of the pages, their event streams, static files and the history JSON.

    `api_guard` is the API's token guard, applied to the history JSON route.
    """
    renderer = Renderer()
    now = settings.now
    renderer.login_required = bool(now.token)
    hub = LiveHub(backend, renderer, list(now.specs))
    reader = HistoryReader(store.path, store.retention)
    pages = StatusPages(now.specs, backend, reader, renderer, hub)

    def follow(new: ApiSettings) -> None:
        renderer.login_required = bool(new.token)
        hub.configured = list(new.specs)
        pages.specs = new.specs

    settings.listeners.append(follow)
    *page_routes, history_json = page_handlers(pages, page_guard(settings.token), api_guard)
    return [
        Router(
            "/",
            route_handlers=page_routes,
            exception_handlers={HTTPException: error_page(renderer)},
        ),
        create_static_files_router("/static", directories=[STATIC]),
        *login_handlers(settings.token, renderer),
        history_json,
    ]
