"""A real HTTP receiver on loopback for the notifier tests: records every POST, answers
with a status chosen per request, and can go down and come back on the same port.

It counts deliveries by (alarm id, transition): `dedup_view` is what a receiver
that de-duplicates on `X-Pathwatch-Delivery` keeps, `duplicates` what it dropped.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookSink:
    """Records POSTs on 127.0.0.1:`port`; `status(received)` picks each answer."""

    def __init__(self, status: Callable[[Received], int] = lambda _r: 200) -> None:
        self.status = status
        self.received: list[Received] = []
        self.port = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received = Received(self.path, dict(self.headers.items()), self.rfile.read(length))
                status = sink.status(received)
                if 200 <= status < 300:
                    with sink._lock:
                        sink.received.append(received)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Go down: the port refuses connections until `start` again."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def taken(self) -> list[Received]:
        """Every request answered 2xx, in arrival order."""
        with self._lock:
            return list(self.received)

    def deliveries(self) -> list[str]:
        """`X-Pathwatch-Delivery` of every request taken, in order."""
        return [r.headers.get("X-Pathwatch-Delivery", "") for r in self.taken()]

    def dedup_view(self) -> Counter[str]:
        """Deliveries taken, counted by alarm id and transition."""
        return Counter(self.deliveries())
