"""Window history in SQLite (aiosqlite, WAL mode, batched writes) with router-like rollups.

Three resolutions live in one table, `lane_history`:

* `0` — every closed window as published (kept `store.retention.raw`, 1 hour);
* `300` — 5-minute rollups of those (kept `retention.five-minute`, 1 day);
* `3600` — 1-hour rollups of the 5-minute rows (kept `retention.hourly`, 180 days).

Rollups add counts, take min of minima and max of maxima, and weight means by
the number of `ok` samples. Medians, p90, jitter and MOS of a rollup are
ok-weighted means of the windows' values (an approximation: exact quantiles
are only kept per window). A bucket is rolled up once it is `settle_s` old.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from pathlib import Path

import aiosqlite

from aggregator.stats import LOSS_OUTCOMES
from schemas.config import RetentionConfig
from schemas.history import (
    FIVE_MINUTES,
    HOUR,
    LANE_COLUMNS,
    RAW,
    SELECT_ROUTE,
    HistoryRow,
    history_row,
    resolution_for,
)
from schemas.wire import WindowStats

__all__ = [
    "FIVE_MINUTES",
    "HOUR",
    "RAW",
    "HistoryRow",
    "HistoryStore",
    "resolution_for",
    "rows_of",
]

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS lane_history (
    resolution INTEGER NOT NULL,
    service TEXT NOT NULL, route TEXT NOT NULL,
    protocol TEXT NOT NULL, traffic_class TEXT NOT NULL, source TEXT NOT NULL,
    destination TEXT NOT NULL, probe TEXT NOT NULL,
    window_start REAL NOT NULL, window_end REAL NOT NULL,
    count INTEGER NOT NULL, errors INTEGER NOT NULL, ok INTEGER NOT NULL, lost INTEGER NOT NULL,
    latency_min REAL, latency_max REAL, latency_mean REAL, latency_median REAL,
    latency_p90 REAL, jitter REAL, mos REAL,
    PRIMARY KEY (resolution, {LANE_COLUMNS}, window_start)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS lane_history_time ON lane_history (resolution, window_start);
CREATE TABLE IF NOT EXISTS rollup_marks (resolution INTEGER PRIMARY KEY, done_until REAL NOT NULL);
"""

_INSERT = (
    "INSERT OR REPLACE INTO lane_history VALUES "
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _weighted(column: str) -> str:
    return f"SUM({column} * ok) / NULLIF(SUM(CASE WHEN {column} IS NOT NULL THEN ok ELSE 0 END), 0)"


_ROLLUP = f"""
INSERT OR REPLACE INTO lane_history
SELECT :target, {LANE_COLUMNS},
    CAST(window_start / :target AS INTEGER) * :target,
    CAST(window_start / :target AS INTEGER) * :target + :target,
    SUM(count), SUM(errors), SUM(ok), SUM(lost),
    MIN(latency_min), MAX(latency_max), {_weighted("latency_mean")},
    {_weighted("latency_median")}, {_weighted("latency_p90")}, {_weighted("jitter")},
    {_weighted("mos")}
FROM lane_history
WHERE resolution = :source AND window_start >= :start AND window_start < :cutoff
GROUP BY {LANE_COLUMNS}, CAST(window_start / :target AS INTEGER)
"""


def rows_of(stats: WindowStats) -> list[tuple[object, ...]]:
    """The raw-resolution rows of one closed window."""
    rows: list[tuple[object, ...]] = []
    for lane in stats.lanes:
        ok = lane.outcomes.get("ok", 0)
        lost = sum(n for outcome, n in lane.outcomes.items() if outcome in LOSS_OUTCOMES)
        rows.append(
            (
                RAW,
                stats.service,
                stats.route,
                lane.protocol,
                lane.traffic_class,
                lane.source,
                lane.destination,
                lane.probe,
                stats.window_start,
                stats.window_end,
                lane.count,
                lane.errors,
                ok,
                lost,
                lane.latency_min_ms,
                lane.latency_max_ms,
                lane.latency_mean_ms,
                lane.latency_median_ms,
                lane.latency_p90_ms,
                lane.jitter_ms,
                lane.mos,
            )
        )
    return rows


class HistoryStore:
    """The SQLite history of closed windows."""

    def __init__(
        self,
        path: str | Path,
        retention: RetentionConfig | None = None,
        *,
        batch_rows: int = 2000,
        settle_s: float = 60.0,
    ) -> None:
        self.path = Path(path)
        self.retention = retention or RetentionConfig()
        self.batch_rows = batch_rows
        self.settle_s = settle_s
        self._db: aiosqlite.Connection | None = None
        self._pending: list[tuple[object, ...]] = []
        self.rows_written = 0

    async def open(self) -> HistoryStore:
        if self.path.parent != Path():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(self.path)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.executescript(_SCHEMA)
        await db.commit()
        self._db = db
        return self

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("history store is not open")
        return self._db

    def add(self, stats: WindowStats) -> None:
        """Queue a closed window; written at the next flush."""
        self._pending.extend(rows_of(stats))

    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Write queued rows in transactions of at most `batch_rows` rows."""
        written = 0
        while self._pending:
            chunk = self._pending[: self.batch_rows]
            del self._pending[: self.batch_rows]
            await self.db.executemany(_INSERT, chunk)
            await self.db.commit()
            written += len(chunk)
        self.rows_written += written
        return written

    async def _mark(self, resolution: int) -> float | None:
        async with self.db.execute(
            "SELECT done_until FROM rollup_marks WHERE resolution = ?", (resolution,)
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else float(row[0])

    async def _roll(self, source: int, target: int, now: float) -> int:
        cutoff = math.floor((now - self.settle_s) / target) * target
        start = await self._mark(target)
        if start is None:
            async with self.db.execute(
                "SELECT MIN(window_start) FROM lane_history WHERE resolution = ?", (source,)
            ) as cursor:
                row = await cursor.fetchone()
            if row is None or row[0] is None:
                return 0
            start = math.floor(float(row[0]) / target) * target
        if start >= cutoff:
            return 0
        cursor = await self.db.execute(
            _ROLLUP, {"target": target, "source": source, "start": start, "cutoff": cutoff}
        )
        count = cursor.rowcount
        await cursor.close()
        await self.db.execute(
            "INSERT OR REPLACE INTO rollup_marks VALUES (?, ?)", (target, float(cutoff))
        )
        await self.db.commit()
        return max(count, 0)

    async def rollup(self, now: float | None = None) -> int:
        """Roll raw windows into 5-minute buckets and those into hours; rows written."""
        now = time.time() if now is None else now
        await self.flush()
        rolled = await self._roll(RAW, FIVE_MINUTES, now)
        rolled += await self._roll(FIVE_MINUTES, HOUR, now)
        return rolled

    async def prune(self, now: float | None = None) -> int:
        """Delete rows older than their resolution's retention; rows deleted."""
        now = time.time() if now is None else now
        deleted = 0
        for resolution, keep in (
            (RAW, self.retention.raw),
            (FIVE_MINUTES, self.retention.five_minute),
            (HOUR, self.retention.hourly),
        ):
            cursor = await self.db.execute(
                "DELETE FROM lane_history WHERE resolution = ? AND window_end < ?",
                (resolution, now - keep),
            )
            deleted += max(cursor.rowcount, 0)
            await cursor.close()
        await self.db.commit()
        return deleted

    async def query(
        self,
        service: str,
        route: str,
        since: float,
        *,
        until: float | None = None,
        resolution: int | None = None,
        now: float | None = None,
    ) -> list[HistoryRow]:
        """Rows of one route from `since`, at the finest resolution still kept."""
        now = time.time() if now is None else now
        if resolution is None:
            resolution = resolution_for(now - since, self.retention)
        async with self.db.execute(
            SELECT_ROUTE,
            (resolution, service, route, since, until if until is not None else math.inf),
        ) as cursor:
            rows = await cursor.fetchall()
        return [history_row(row) for row in rows]

    async def run(
        self, stop: asyncio.Event, flush_every_s: float = 1.0, maintain_every_s: float = 60.0
    ) -> None:
        """Flush every `flush_every_s`, roll up and prune every `maintain_every_s`, until stop."""
        next_maintenance = time.monotonic() + maintain_every_s
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=flush_every_s)
            await self.flush()
            if time.monotonic() >= next_maintenance:
                next_maintenance = time.monotonic() + maintain_every_s
                await self.rollup()
                await self.prune()

    async def close(self) -> None:
        if self._db is not None:
            await self.flush()
            await self._db.close()
            self._db = None
