"""The one `/metrics` HTTP server of pathwatch's roles (the aggregator's exporter, the
healer): a prometheus-client registry at `/metrics`, plus `/healthz` (the event loop still
runs: the server answers from its own thread) and `/readyz` (the role's `Readiness`).

`MetricsHttpServer(registry).start("127.0.0.1:9464", "metrics.listen")` binds through
`pathwatch.runtime.listen` (a taken or wrong address is a ListenError naming the address, the
cause and the setting to change) and serves with the connection and header-time bounds
of `pathwatch.runtime.httpbounds`, in a daemon thread; port 0 picks a free port (see `.port`);
`stop()` shuts it down.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Self
from wsgiref.simple_server import WSGIServer
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import make_wsgi_app

from pathwatch.runtime.httpbounds import serve_wsgi
from pathwatch.runtime.listen import bind_listener
from pathwatch.runtime.readiness import LoopLiveness, Readiness


def _json(start_response: StartResponse, status: int, body: object) -> list[bytes]:
    payload = json.dumps(body).encode()
    reason = "OK" if status == 200 else "Service Unavailable"  # the only two it sends
    start_response(f"{status} {reason}", [("Content-Type", "application/json")])
    return [payload]


class MetricsHttpServer:
    """Serves one registry at `/metrics`, with `/healthz` and `/readyz`, until `stop()`."""

    def __init__(self, registry: CollectorRegistry, readiness: Readiness | None = None) -> None:
        self.registry = registry
        self.readiness = readiness or Readiness()
        self.liveness = LoopLiveness()
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def _app(self) -> WSGIApplication:
        metrics = make_wsgi_app(self.registry)

        def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/healthz":
                return _json(start_response, *self.liveness.report())
            if path == "/readyz":
                return _json(start_response, *self.readiness.report())
            scrape: Iterable[bytes] = metrics(environ, start_response)
            return scrape

        return app

    def start(self, listen: str, setting: str = "metrics.listen") -> Self:
        """Serve on `listen`; ListenError (address, cause, remedy naming `setting`) when it
        cannot."""
        self._server, self._thread = serve_wsgi(self._app(), bind_listener(listen, setting))
        self.port = int(self._server.server_address[1])
        self.liveness.start()
        return self

    def stop(self) -> None:
        self.liveness.stop()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=1.0)
