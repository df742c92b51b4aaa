"""`/metrics` over HTTP for a component's own prometheus-client registry.

`MetricsHttpServer(registry).start("127.0.0.1:9464")` serves the registry with
prometheus-client's own HTTP server in a daemon thread (port 0 picks a free one,
see `.port`); `stop()` shuts it down. Listen addresses are `host:port`, IPv6 as
`[::1]:port`, an empty host meaning 127.0.0.1.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import start_http_server


class ListenError(ValueError):
    """A listen address that is not `host:port`."""


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:port`) to (host, port)."""
    host, colon, port = listen.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        raise ListenError(f"{listen!r}: expected host:port, such as 127.0.0.1:9464")
    return host.strip("[]") or "127.0.0.1", int(port)


class MetricsHttpServer:
    """Serves one registry at `/metrics` until `stop()`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self, listen: str) -> MetricsHttpServer:
        host, port = parse_listen(listen)
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = int(self._server.server_address[1])
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=2.0)
