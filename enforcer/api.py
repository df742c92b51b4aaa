"""The REST API (litestar under uvicorn): service paths, load balancer, alarms,
probe state for plugin probes, health, window history, and its own OpenAPI
schema at `/schema/openapi.json`; and the live status page (`enforcer.web`).

A bearer token (`api.token`) is required on every `/api/` route when set;
config refuses a listen address off loopback without one. Bad requests get
401 (no token), 403 (wrong token), 404 (unknown service, route or probe state) or 422
(malformed input), each with a `detail` saying why. Probe state is accepted
only for probe names the config declares on the addressed route(s) (404
otherwise). Bodies are bounded by `limits.MAX_MESSAGE_BYTES`; connections and
header time by `pathwatch.httpbounds`. Given a `LiveConfig`, the token and the
routes follow every new config revision (`enforcer.api_settings`); the listen
address is kept until a restart.
"""

import asyncio
import contextlib
import hmac
import logging
import time
from typing import Annotated, Any, Literal

import msgspec
import uvicorn
from litestar import Litestar, Request, Response, delete, get, put
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.params import FromPath, FromQuery, JSONBody

from enforcer.api_backend import ApiBackend
from enforcer.api_settings import CurrentSettings
from enforcer.load_balancer import LoadBalancerRow, load_balancer_rows
from enforcer.web import status_page
from enforcer.web.auth import COOKIE, token_is_valid
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configsource import LiveConfig
from pathwatch.runtime.configstore import DEFAULT_NAME
from pathwatch.runtime.fleet import FleetReport
from pathwatch.runtime.httpbounds import bounded_h11
from pathwatch.runtime.listen import bind_listener, host_port
from pathwatch.runtime.readiness import Readiness, nats_connected
from schemas.config import PathwatchConfig
from schemas.limits import MAX_MESSAGE_BYTES, MAX_TEXT_CHARS, http_connection_limit
from schemas.names import is_subject_safe
from schemas.wire import Alarm, PathState, ProbeState

log = logging.getLogger("pathwatch.api")

#: Config keys the API reads only at start: where it listens, the history store.
START_ONLY = ("api.listen", "store")


class ProbeStateRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Set a plugin probe's state for one service route or for every route through an interface."""

    state: Literal["up", "down"]
    service: str | None = None
    route: str | None = None
    node: str | None = None
    interface: str | None = None
    reason: Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)] = ""
    ttl: Annotated[float, msgspec.Meta(gt=0, le=2592000)] | None = None


class Health(msgspec.Struct, frozen=True):
    status: str
    paths: int
    alarms: int


class Deleted(msgspec.Struct, frozen=True):
    deleted: list[str]


def _unprocessable(detail: str) -> HTTPException:
    return HTTPException(status_code=422, detail=detail)


def _validation_to_422(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    return Response({"status_code": 422, "detail": exc.detail, "extra": exc.extra}, status_code=422)


def create_app(
    settings: CurrentSettings, backend: ApiBackend, readiness: Readiness, config: PathwatchConfig
) -> Litestar:
    """The litestar application over `backend` with the token and routes of `settings`
    (read at each request); `/readyz` answers from `readiness`; the status page reads
    the history store of `config`."""

    def _require_declared(probe: str, where: list[tuple[str, str]], place: str) -> None:
        declared = settings.now.declared
        if not any(probe in declared.get(key, ()) for key in where):
            raise NotFoundException(detail=f"probe {probe!r} is not declared on {place}")

    def require_token(
        connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        token = settings.now.token
        if not token:
            return
        header = connection.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            # A browser signed in to the status page may read the JSON its pages link to;
            # a change needs the header, so no cross-site form can make one.
            if connection.scope.get("method") == "GET" and token_is_valid(
                connection.cookies.get(COOKIE, ""), token
            ):
                return
            raise NotAuthorizedException(
                detail="a bearer token is required (Authorization: Bearer ...)"
            )
        if not hmac.compare_digest(presented.strip().encode(), token.encode()):
            raise PermissionDeniedException(detail="the bearer token is not valid")

    @get("/healthz", sync_to_thread=False)
    def healthz() -> Health:
        return Health(
            "ok", len(backend.paths), sum(a.status == "raised" for a in backend.alarms.values())
        )

    def require_known(service: str | None, route: str | None = None) -> None:
        """404 naming the first filter that matches no configured service or route."""
        routes = settings.now.routes
        if service is not None and not any(s == service for s, _ in routes):
            raise NotFoundException(detail=f"no service named {service!r}")
        if route is not None and not any(r == route and service in (None, s) for s, r in routes):
            where = f" in service {service!r}" if service is not None else ""
            raise NotFoundException(detail=f"no service route named {route!r}{where}")

    @get("/readyz", sync_to_thread=False)
    def readyz() -> Response[dict[str, object]]:
        status, body = readiness.report()
        return Response(body, status_code=status)

    @get("/api/v1/service-paths", guards=[require_token], sync_to_thread=False)
    def service_paths(
        service: FromQuery[str | None] = None, route: FromQuery[str | None] = None
    ) -> list[PathState]:
        """Every route's PathState (optionally of one service and / or route name); 404 for
        a name that is not configured, an empty list while a configured route has no state."""
        require_known(service, route)
        return [
            state
            for _, state in sorted(backend.paths.items())
            if service in (None, state.service) and route in (None, state.route)
        ]

    @get(
        "/api/v1/service-paths/{service:str}/{route:str}",
        guards=[require_token],
        sync_to_thread=False,
    )
    def service_path(service: FromPath[str], route: FromPath[str]) -> PathState:
        state = backend.paths.get(f"{service}.{route}")
        if state is None:
            if (service, route) in settings.now.routes:
                raise NotFoundException(detail=f"no state yet for {service}/{route}")
            raise NotFoundException(detail=f"unknown service route {service}/{route}")
        return state

    @get("/api/v1/load-balancer", guards=[require_token], sync_to_thread=False)
    def load_balancer(service: FromQuery[str | None] = None) -> list[LoadBalancerRow]:
        """Routes with the router's load-balancer columns, best first per service."""
        require_known(service)
        return load_balancer_rows(list(backend.paths.values()), service)

    @get("/api/v1/alarms", guards=[require_token], sync_to_thread=False)
    def alarms(
        include_cleared: FromQuery[bool] = False, service: FromQuery[str | None] = None
    ) -> list[Alarm]:
        """Active alarms (raised, not cleared); `include_cleared` adds recently cleared ones."""
        require_known(service)
        return sorted(
            (
                alarm
                for alarm in backend.alarms.values()
                if (include_cleared or alarm.status == "raised")
                and (service is None or alarm.service == service)
            ),
            key=lambda a: a.raised_at,
        )

    @get("/api/v1/fleet", guards=[require_token])
    async def fleet(config: FromQuery[str] = DEFAULT_NAME) -> FleetReport:
        """Every role instance and agent with its node, version and the config it runs,
        flagged `behind` when that is not the latest revision of `config` in KV (or,
        with none there, not what most run) and `silent` when no longer heard."""
        if not is_subject_safe(config):
            raise _unprocessable(f"config name {config!r} must match [A-Za-z0-9_-]+")
        return await backend.fleet(config)

    def _target_keys(
        probe: str,
        service: str | None,
        route: str | None,
        node: str | None,
        interface: str | None,
        for_write: bool,
    ) -> tuple[list[str], dict[str, str]]:
        if not is_subject_safe(probe):
            raise _unprocessable(f"probe name {probe!r} must match [A-Za-z0-9_-]+")
        now = settings.now
        routes = now.routes
        if not any(probe in names for names in now.declared.values()):
            raise NotFoundException(detail=f"probe {probe!r} is not declared in the config")
        by_route = service is not None or route is not None
        by_interface = node is not None or interface is not None
        if by_route and by_interface:
            raise _unprocessable("address either service + route or node + interface, not both")
        if by_route:
            if not service or not route:
                raise _unprocessable("service and route must be given together")
            found = routes.get((service, route))
            if found is None:
                raise NotFoundException(detail=f"unknown service route {service}/{route}")
            if for_write and found[2] == "disabled":
                raise _unprocessable(f"probe-type is disabled on {service}/{route}")
            _require_declared(probe, [(service, route)], f"{service}/{route}")
            return [f"{probe}.{service}.{route}"], {"service": service, "route": route}
        if by_interface:
            if not node or not interface:
                raise _unprocessable("node and interface must be given together")
            if not is_subject_safe(node) or not is_subject_safe(interface):
                raise _unprocessable("node and interface must match [A-Za-z0-9_-]+")
            through = [key for key, value in routes.items() if value[:2] == (node, interface)]
            if not through:
                raise NotFoundException(detail=f"no service route goes through {node}/{interface}")
            if for_write and all(routes[key][2] == "disabled" for key in through):
                raise _unprocessable(
                    f"probe-type is disabled on every route via {node}/{interface}"
                )
            _require_declared(probe, through, f"any route via {node}/{interface}")
            return [f"{probe}.if.{node}.{interface}"], {"node": node, "interface": interface}
        if for_write:
            raise _unprocessable("address the probe by service + route or by node + interface")
        return [], {}

    @put("/api/v1/probe-state/{probe:str}", guards=[require_token], status_code=200)
    async def set_probe_state(
        probe: FromPath[str], data: JSONBody[ProbeStateRequest]
    ) -> ProbeState:
        """Set a plugin probe's state; `ttl` seconds bounds how long it holds."""
        keys, where = _target_keys(probe, data.service, data.route, data.node, data.interface, True)
        now = time.time()
        state = ProbeState(
            probe=probe,
            state=data.state,
            reason=data.reason,
            set_at=now,
            expires_at=now + data.ttl if data.ttl else None,
            service=where.get("service", ""),
            route=where.get("route", ""),
            node=where.get("node", ""),
            interface=where.get("interface", ""),
        )
        await backend.put_probe_state(keys[0], state)
        return state

    async def _current(keys: list[str]) -> list[ProbeState]:
        now = time.time()
        states = [await backend.get_probe_state(key) for key in keys]
        return [s for s in states if s is not None and (s.expires_at is None or s.expires_at > now)]

    @get("/api/v1/probe-state/{probe:str}", guards=[require_token])
    async def get_probe_state(
        probe: FromPath[str],
        service: FromQuery[str | None] = None,
        route: FromQuery[str | None] = None,
        node: FromQuery[str | None] = None,
        interface: FromQuery[str | None] = None,
    ) -> list[ProbeState]:
        """The probe's state at one address, or at every address when none is given."""
        keys, _ = _target_keys(probe, service, route, node, interface, False)
        addressed = bool(keys)
        states = await _current(keys or await backend.probe_keys(probe))
        if addressed and not states:
            raise NotFoundException(detail=f"no state set for probe {probe!r} there")
        return states

    @delete("/api/v1/probe-state/{probe:str}", guards=[require_token], status_code=200)
    async def delete_probe_state(
        probe: FromPath[str],
        service: FromQuery[str | None] = None,
        route: FromQuery[str | None] = None,
        node: FromQuery[str | None] = None,
        interface: FromQuery[str | None] = None,
    ) -> Deleted:
        """Delete the probe's state at one address, or everywhere when none is given."""
        keys, _ = _target_keys(probe, service, route, node, interface, False)
        existing = keys if keys else await backend.probe_keys(probe)
        present = [key for key in existing if await backend.get_probe_state(key) is not None]
        if not present:
            raise NotFoundException(detail=f"no state set for probe {probe!r}")
        for key in present:
            await backend.delete_probe_state(key)
        return Deleted(present)

    return Litestar(
        route_handlers=[
            healthz,
            readyz,
            service_paths,
            service_path,
            load_balancer,
            alarms,
            fleet,
            set_probe_state,
            get_probe_state,
            delete_probe_state,
            *status_page(settings, config.store, backend, require_token),
        ],
        exception_handlers={ValidationException: _validation_to_422},
        openapi_config=OpenAPIConfig(title="pathwatch", version="1.0.0", path="/schema"),
        debug=False,
        request_max_body_size=MAX_MESSAGE_BYTES,
        logging_config=None,  # the process configures logging; litestar must not redo it
    )


#: Seconds the server gets to finish its requests at stop (every process stops within 2 s).
STOP_S = 1


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the caller's `stop` event rules."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


async def run_api(
    config: PathwatchConfig,
    bus: Bus,
    *,
    stop: asyncio.Event,
    listen: str | None = None,
    live: LiveConfig | None = None,
) -> None:
    """Serve the API on `listen` (default `api.listen`) until `stop` is set; ListenError
    when it cannot listen there. With `live`, it follows every new config revision."""
    sock = bind_listener(listen or config.api.listen, "api.listen")
    backend = ApiBackend(bus, live)
    settings = CurrentSettings(config, host=sock.getsockname()[0])
    if live is not None:
        live.on_change(settings.swap)
    started = asyncio.Event()
    readiness = (
        Readiness()
        .require("NATS connection", nats_connected(bus))
        .require("path states and alarms loaded", lambda: started.is_set() and backend.loaded)
    )
    server = _Server(
        uvicorn.Config(
            create_app(settings, backend, readiness, config),
            log_level="warning",
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=STOP_S,
            # connections kept, and accepted per loop turn (uvicorn's default
            # backlog, 2048, accepts a whole burst before any can be closed)
            http=bounded_h11(),
            backlog=http_connection_limit(),
        )
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    address = sock.getsockname()[:2]
    try:
        await backend.start()
        started.set()
        log.info("API on http://%s (OpenAPI at /schema/openapi.json)", host_port(*address))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
    finally:
        backend.closing.set()  # ends the status page's event streams, so no wait on them
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, timeout=STOP_S)
        await backend.stop()
        sock.close()
