"""Read-only access to the SQLite store for the API: a route's window history
(written by the aggregator) with its transitions and alarms (written by the
enforcer) over a look-back.

The file is opened read-only for each request (a connection is a thread in
aiosqlite; one per request leaves nothing to close at shutdown); a file or
table that does not exist yet reads as no rows. Rows come at the finest resolution kept for the
span (schemas/history.py), followed by the raw windows after the last rollup,
so the newest windows show before they are rolled up.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import aiosqlite
import msgspec

from enforcer.store import read_alarms, read_transitions
from schemas.config import RetentionConfig
from schemas.history import RAW, SELECT_ROUTE, HistoryRow, history_row, resolution_for
from schemas.wire import Alarm, PathEvent

T = TypeVar("T")


class RouteHistory(msgspec.Struct, frozen=True, kw_only=True):
    """A route over a look-back: window rows of every lane, transitions and alarms."""

    service: str
    route: str
    since: float
    until: float
    resolution: int
    rows: list[HistoryRow]
    transitions: list[PathEvent]
    alarms: list[Alarm]


async def _or_none(query: Awaitable[T]) -> T | None:
    """The query's result, or None when its table does not exist (yet)."""
    try:
        return await query
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise


class HistoryReader:
    """Queries one SQLite store file read-only."""

    def __init__(self, path: str | Path, retention: RetentionConfig | None = None) -> None:
        self.path = Path(path)
        self.retention = retention or RetentionConfig()

    async def _rows(
        self, db: aiosqlite.Connection, service: str, route: str, resolution: int, since: float
    ) -> list[HistoryRow]:
        async with db.execute(SELECT_ROUTE, (resolution, service, route, since, math.inf)) as cur:
            return [history_row(row) for row in await cur.fetchall()]

    async def route_history(
        self, service: str, route: str, span_s: float, now: float
    ) -> RouteHistory:
        """Everything of one route over the last `span_s` seconds before `now`."""
        since = now - span_s
        resolution = resolution_for(span_s, self.retention)
        rows: list[HistoryRow] = []
        transitions: list[PathEvent] = []
        alarms: list[Alarm] = []
        if self.path.exists():
            uri = f"file:{self.path.resolve()}?mode=ro"
            async with aiosqlite.connect(uri, uri=True) as db:
                await db.execute("PRAGMA busy_timeout=2000")
                rows = await _or_none(self._rows(db, service, route, resolution, since)) or []
                if resolution != RAW:
                    rolled_until = max((row.window_end for row in rows), default=since)
                    rows += await _or_none(self._rows(db, service, route, RAW, rolled_until)) or []
                transitions = await _or_none(read_transitions(db, service, route, since)) or []
                alarms = await _or_none(read_alarms(db, service, route, since)) or []
        return RouteHistory(
            service=service,
            route=route,
            since=since,
            until=now,
            resolution=resolution,
            rows=rows,
            transitions=transitions,
            alarms=alarms,
        )
