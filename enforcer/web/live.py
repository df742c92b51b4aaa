"""Live updates of the status page: server-sent events fed by the API's caches
(the KV watch of path states and the alarm stream) and, for a route page, by
the route's closed windows (`pw.stats.<service>.<route>`).

Each connected page has a Subscriber: the sets of path keys and alarm ids
changed since it last sent, and the windows that closed. A burst of changes
folds into one event (the newest state wins), so a slow browser costs a
bounded amount of memory and never a queue. Event ids are
`<boot>:<revision>`: a browser that reconnects (EventSource does so by
itself) sends the last id it saw and gets every overview row changed since;
after an API restart (another boot) it gets every row.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
from litestar.response import ServerSentEventMessage

from enforcer.api_backend import ApiBackend, ChangeKind
from enforcer.web.charts import lane_of, point
from enforcer.web.render import Renderer
from enforcer.web.views import active_by_route, alarm_lists, route_row, sorted_lanes
from schemas import subjects
from schemas.codec import DecodeError, decode_message
from schemas.wire import WindowStats

#: A comment line this often keeps proxies and the browser from closing an idle stream.
KEEPALIVE_S = 15.0
#: After sending, changes this long are folded into the next event.
FOLD_S = 0.05
#: Windows kept for a route page that has not yet been sent them.
MAX_WINDOWS = 64
#: How long a browser waits before reconnecting, in ms.
RETRY_MS = 1000


class Closing(Exception):
    """The API is stopping: event streams end."""


class Subscriber:
    """What changed for one connected page since it last sent."""

    def __init__(self, closing: asyncio.Event) -> None:
        self.closing = closing
        self.paths: set[str] = set()
        self.alarms: set[str] = set()
        self.windows: deque[dict[str, Any]] = deque(maxlen=MAX_WINDOWS)
        self.wake = asyncio.Event()

    def mark(self, kind: ChangeKind, key: str) -> None:
        (self.paths if kind == "path" else self.alarms).add(key)
        self.wake.set()

    async def changes(self) -> tuple[set[str], set[str], list[dict[str, Any]]] | None:
        """The next changes, or None after KEEPALIVE_S without any; Closing when the API stops."""
        waits = [
            asyncio.ensure_future(self.wake.wait()),
            asyncio.ensure_future(self.closing.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if self.closing.is_set():
            raise Closing
        if not self.wake.is_set():
            return None
        self.wake.clear()
        paths, alarms, windows = self.paths, self.alarms, list(self.windows)
        self.paths, self.alarms = set(), set()
        self.windows.clear()
        return paths, alarms, windows


def _message(event: str, data: Any, event_id: str | None = None) -> ServerSentEventMessage:
    return ServerSentEventMessage(
        data=msgspec.json.encode(data).decode(), event=event, id=event_id, retry=RETRY_MS
    )


_KEEPALIVE = ServerSentEventMessage(comment="keep-alive")


class LiveHub:
    """Fans the API backend's changes out to the connected pages."""

    def __init__(
        self, backend: ApiBackend, renderer: Renderer, configured: list[tuple[str, str]]
    ) -> None:
        self.backend = backend
        self.renderer = renderer
        self.configured = configured
        self.subscribers: set[Subscriber] = set()
        self.boot = secrets.token_hex(4)
        self.revision = 0
        #: Revision at which each overview row (path key) last changed.
        self.row_revisions: dict[str, int] = {}
        backend.listeners.append(self.changed)

    def changed(self, kind: ChangeKind, key: str) -> None:
        """Backend listener: note the change and wake every page."""
        self.revision += 1
        row = key
        if kind == "alarm":
            alarm = self.backend.alarms.get(key)
            row = f"{alarm.service}.{alarm.route}" if alarm is not None else ""
        if row:
            self.row_revisions[row] = self.revision
        for subscriber in self.subscribers:
            subscriber.mark(kind, key)

    @property
    def event_id(self) -> str:
        return f"{self.boot}:{self.revision}"

    def seen_revision(self, last_event_id: str) -> int:
        """The revision a reconnecting page had; 0 (everything) from another boot."""
        boot, _, revision = last_event_id.partition(":")
        if boot != self.boot or not revision.isdigit():
            return 0
        return int(revision)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscriber]:
        """A Subscriber for one stream; the stream ends quietly when the API stops."""
        subscriber = Subscriber(self.backend.closing)
        self.subscribers.add(subscriber)
        try:
            yield subscriber
        except Closing:
            return
        finally:
            self.subscribers.discard(subscriber)

    # --- overview -------------------------------------------------------------

    def _rows(self, keys: set[str]) -> dict[str, str]:
        paths, alarms = self.backend.paths, self.backend.alarms
        active = active_by_route(alarms.values())
        rows: dict[str, str] = {}
        for key in keys:
            service, _, route = key.partition(".")
            row = route_row(service, route, paths, active)
            rows[f"path-{key}"] = self.renderer.fragment("path_row", row)
        return rows

    def _rows_since(self, revision: int) -> set[str]:
        return {key for key, changed in self.row_revisions.items() if changed > revision}

    async def overview(self, last_event_id: str) -> AsyncIterator[ServerSentEventMessage]:
        """Rows of the overview that changed: since `last_event_id`, then as they change."""
        with self.subscribe() as subscriber:
            keys = self._rows_since(self.seen_revision(last_event_id))
            if not self.seen_revision(last_event_id):
                keys |= {f"{s}.{r}" for s, r in self.configured} | set(self.backend.paths)
            yield _message("rows", {"rows": self._rows(keys)}, self.event_id)
            while True:
                changes = await subscriber.changes()
                if changes is None:
                    yield _KEEPALIVE
                    continue
                paths, alarms, _ = changes
                keys = paths | {
                    f"{a.service}.{a.route}"
                    for a in (self.backend.alarms.get(i) for i in alarms)
                    if a is not None
                }
                yield _message("rows", {"rows": self._rows(keys)}, self.event_id)
                await asyncio.sleep(FOLD_S)

    # --- alarms -----------------------------------------------------------------

    def _alarm_tables(self, service: str | None = None, route: str | None = None) -> str:
        active, cleared = alarm_lists(self.backend.alarms.values(), service, route)
        return self.renderer.fragment("alarm_tables", active, cleared, route is None)

    async def alarms(self) -> AsyncIterator[ServerSentEventMessage]:
        """The alarm tables, again whenever an alarm is raised or cleared."""
        with self.subscribe() as subscriber:
            yield _message("alarms", {"html": self._alarm_tables()}, self.event_id)
            while True:
                changes = await subscriber.changes()
                if changes is None:
                    yield _KEEPALIVE
                    continue
                if changes[1]:
                    yield _message("alarms", {"html": self._alarm_tables()}, self.event_id)
                    await asyncio.sleep(FOLD_S)

    # --- one route ----------------------------------------------------------------

    def _route(self, service: str, route: str) -> dict[str, Any]:
        paths, alarms = self.backend.paths, self.backend.alarms
        row = route_row(service, route, paths, active_by_route(alarms.values()))
        state = row.state
        return {
            "html": self.renderer.fragment("route_state", row, sorted_lanes(state)),
            "alarms_html": self._alarm_tables(service, route),
            "state": row.shown,
            "since": state.since if state is not None else None,
            "alarms": [a for a in alarms.values() if a.service == service and a.route == route],
        }

    async def route(
        self, service: str, route: str, lane: str
    ) -> AsyncIterator[ServerSentEventMessage]:
        """A route's state and alarms whenever they change, and its closed windows of `lane`."""
        key = f"{service}.{route}"
        with self.subscribe() as subscriber:

            async def on_window(msg: Any) -> None:
                with contextlib.suppress(DecodeError):
                    stats = decode_message(msg.data, WindowStats)
                    for lanestats in stats.lanes:
                        if lane_of(lanestats).slug == lane:
                            subscriber.windows.append({"t": stats.window_end, **point(lanestats)})
                            subscriber.wake.set()

            subscription = await self.backend.bus.nc.subscribe(
                subjects.stats(service, route), cb=on_window
            )
            try:
                yield _message("route", self._route(service, route), self.event_id)
                while True:
                    changes = await subscriber.changes()
                    if changes is None:
                        yield _KEEPALIVE
                        continue
                    paths, alarms, windows = changes
                    mine = any(
                        (a := self.backend.alarms.get(i)) is not None
                        and f"{a.service}.{a.route}" == key
                        for i in alarms
                    )
                    if key in paths or mine:
                        yield _message("route", self._route(service, route), self.event_id)
                    if windows:
                        yield _message("windows", {"windows": windows}, self.event_id)
                    await asyncio.sleep(FOLD_S)
            finally:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
