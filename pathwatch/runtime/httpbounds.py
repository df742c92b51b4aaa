"""Bounded HTTP serving for the API (uvicorn) and `/metrics` (a WSGI thread server).

Both keep at most `limits.http_connection_limit()` connections open (at most an
eighth of the process's file limit) and give a client
`limits.HTTP_HEADER_TIMEOUT_S` to send its request head; a connection that
has not by then is closed. When a new connection would pass the limit, the
oldest connection that is not being answered (no request head yet, or idle
between keep-alive requests) is closed instead, so slow or silent clients
cannot shut out a prompt one such as a health check, and the process never
runs out of file descriptors because of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client.exposition import ThreadingWSGIServer
from uvicorn.protocols.http.h11_impl import H11Protocol

from schemas.limits import HTTP_HEADER_TIMEOUT_S, http_connection_limit


def bounded_h11(max_connections: int | None = None) -> type[asyncio.Protocol]:
    """A uvicorn HTTP protocol class (`uvicorn.Config(http=...)`) with the bounds above;
    one class per server, as it holds that server's waiting connections."""
    limit = max_connections or http_connection_limit()
    #: connections not being answered, oldest first
    waiting: OrderedDict[BoundedH11, None] = OrderedDict()

    class BoundedH11(H11Protocol):
        _timer: asyncio.TimerHandle | None = None
        _armed_cycle: Any = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._wait_for_head()
            if len(self.connections) > limit:
                oldest = next(iter(waiting))
                oldest.transport.close()
                waiting.pop(oldest, None)

        def _wait_for_head(self) -> None:
            waiting[self] = None
            self._armed_cycle = self.cycle
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_later(HTTP_HEADER_TIMEOUT_S, self._head_overdue)

        def _head_overdue(self) -> None:
            if self.cycle is self._armed_cycle and not self.transport.is_closing():
                self.transport.close()

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not self._armed_cycle:  # a request head came in
                waiting.pop(self, None)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._wait_for_head()

        def connection_lost(self, exc: Exception | None) -> None:
            waiting.pop(self, None)
            if self._timer is not None:
                self._timer.cancel()
            super().connection_lost(exc)

    return BoundedH11


class _SilentHandler(WSGIRequestHandler):
    """Logs no request (as prometheus-client's own server)."""

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing."""


class BoundedWSGIServer(ThreadingWSGIServer):
    """A thread per connection, at most `max_connections` of them, each cut off after
    `HTTP_HEADER_TIMEOUT_S` (a scrape takes milliseconds); the oldest goes first."""

    max_connections = 0
    #: the listen backlog (socketserver's default, 5, makes a burst of clients retry
    #: their handshakes for seconds)
    request_queue_size = 128

    def server_activate(self) -> None:
        super().server_activate()
        self._lock = threading.Lock()
        self._open: OrderedDict[socket.socket, threading.Timer] = OrderedDict()

    def process_request(self, request: Any, client_address: Any) -> None:
        timer = threading.Timer(HTTP_HEADER_TIMEOUT_S, _cut, (request,))
        timer.daemon = True
        with self._lock:
            self._open[request] = timer
            # the oldest leaves the table at once: its thread closes it after the cut
            evicted = (
                self._open.popitem(last=False) if len(self._open) > self.max_connections else None
            )
        if evicted is not None:
            evicted[1].cancel()
            _cut(evicted[0])
        timer.start()
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            timer = self._open.pop(request, None)
        if timer is not None:
            timer.cancel()
        super().shutdown_request(request)


def _cut(connection: socket.socket) -> None:
    """End a connection from another thread: its handler's next read or write fails."""
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)


def serve_wsgi(
    app: Callable[..., Any], sock: socket.socket, max_connections: int | None = None
) -> tuple[WSGIServer, threading.Thread]:
    """Serve `app` on the listening socket `sock` (`pathwatch.runtime.listen.bind_listener`) in a
    daemon thread with the bounds above."""

    class Server(BoundedWSGIServer):
        address_family = sock.family

    Server.max_connections = max_connections or http_connection_limit()
    server = Server(sock.getsockname(), _SilentHandler, bind_and_activate=False)
    server.socket.close()
    sock.setblocking(True)
    server.socket = sock
    server.server_address = sock.getsockname()
    server.server_activate()
    server.server_name, server.server_port = str(server.server_address[0]), server.server_address[1]
    server.setup_environ()
    server.set_app(app)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return server, thread
