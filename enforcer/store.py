"""SQLite record of alarms and transitions (tables `enforcer_*`, WAL, busy timeout).

The aggregator writes its history into the same file, so every table here is
prefixed `enforcer_`. A (alarm id, status) pair is recorded once: `record_alarm`
tells whether it is new, which is how a restarted enforcer avoids publishing
an alarm twice. What the streams hold and this store lacks (a crash between a
publish and its record) is added at start by `record_published`
(`enforcer.reconcile`).
"""

from pathlib import Path

import aiosqlite
import msgspec

from schemas.wire import Alarm, PathEvent

_SCHEMA = """
CREATE TABLE IF NOT EXISTS enforcer_alarms (
    id TEXT NOT NULL,
    status TEXT NOT NULL,
    service TEXT NOT NULL,
    route TEXT NOT NULL,
    cause TEXT NOT NULL,
    at REAL NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (id, status)
);
CREATE TABLE IF NOT EXISTS enforcer_transitions (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    route TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS enforcer_transitions_route ON enforcer_transitions (service, route, ts);
"""


async def read_transitions(
    db: aiosqlite.Connection, service: str, route: str, since: float = 0.0
) -> list[PathEvent]:
    """Transitions of one route from `since`, oldest first."""
    async with db.execute(
        "SELECT body FROM enforcer_transitions WHERE service = ? AND route = ? AND ts >= ?"
        " ORDER BY ts",
        (service, route, since),
    ) as cursor:
        rows = await cursor.fetchall()
    return [msgspec.json.decode(row[0], type=PathEvent) for row in rows]


async def read_alarms(
    db: aiosqlite.Connection, service: str, route: str, since: float = 0.0
) -> list[Alarm]:
    """Alarms of one route active at some time from `since`, one per id (its clear when
    cleared), oldest raise first."""
    async with db.execute(
        "SELECT id, body FROM enforcer_alarms WHERE service = ? AND route = ? ORDER BY at",
        (service, route),
    ) as cursor:
        rows = await cursor.fetchall()
    latest = {row[0]: msgspec.json.decode(row[1], type=Alarm) for row in rows}
    return sorted(
        (a for a in latest.values() if a.cleared_at is None or a.cleared_at >= since),
        key=lambda alarm: alarm.raised_at,
    )


class EnforcerStore:
    """Alarms and transitions in SQLite; open with `await EnforcerStore.open(path)`."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    @classmethod
    async def open(cls, path: str | Path) -> "EnforcerStore":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(str(path), timeout=10.0)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA busy_timeout=10000")
        await db.executescript(_SCHEMA)
        await db.commit()
        return cls(db)

    async def close(self) -> None:
        await self.db.close()

    async def has_alarm(self, alarm_id: str, status: str) -> bool:
        async with self.db.execute(
            "SELECT 1 FROM enforcer_alarms WHERE id = ? AND status = ?", (alarm_id, status)
        ) as cursor:
            return await cursor.fetchone() is not None

    async def record_alarm(self, alarm: Alarm) -> bool:
        """Store a raise or a clear; False when it was already recorded."""
        added = await self._insert_alarm(alarm)
        await self.db.commit()
        return added

    async def update_alarm(self, alarm: Alarm) -> None:
        """Replace the body of a raised alarm by its update (same id, new reason)."""
        await self.db.execute(
            "UPDATE enforcer_alarms SET body = ? WHERE id = ? AND status = 'raised'",
            (msgspec.json.encode(alarm).decode(), alarm.id),
        )
        await self.db.commit()

    async def record_event(self, event: PathEvent) -> bool:
        added = await self._insert_event(event)
        await self.db.commit()
        return added

    async def record_published(self, alarms: list[Alarm], events: list[PathEvent]) -> int:
        """Record, in one transaction, the alarms and transitions not recorded yet;
        returns how many were missing."""
        added = 0
        for alarm in alarms:
            added += await self._insert_alarm(alarm)
        for event in events:
            added += await self._insert_event(event)
        await self.db.commit()
        return added

    async def _insert_alarm(self, alarm: Alarm) -> bool:
        at = alarm.cleared_at if alarm.status == "cleared" and alarm.cleared_at else alarm.raised_at
        cursor = await self.db.execute(
            "INSERT OR IGNORE INTO enforcer_alarms (id, status, service, route, cause, at, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                alarm.id,
                alarm.status,
                alarm.service,
                alarm.route,
                alarm.cause,
                at,
                msgspec.json.encode(alarm).decode(),
            ),
        )
        return cursor.rowcount > 0

    async def _insert_event(self, event: PathEvent) -> bool:
        cursor = await self.db.execute(
            "INSERT OR IGNORE INTO enforcer_transitions (id, service, route, kind, ts, body)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                event.id,
                event.service,
                event.route,
                event.kind,
                event.ts,
                msgspec.json.encode(event).decode(),
            ),
        )
        return cursor.rowcount > 0

    async def recorded_alarms(self) -> set[tuple[str, str]]:
        """Every recorded (alarm id, status)."""
        async with self.db.execute("SELECT id, status FROM enforcer_alarms") as cursor:
            return {(row[0], row[1]) for row in await cursor.fetchall()}

    async def active_alarms(self) -> list[Alarm]:
        """Raised alarms without a clear, oldest first."""
        async with self.db.execute(
            "SELECT body FROM enforcer_alarms a WHERE status = 'raised' AND NOT EXISTS"
            " (SELECT 1 FROM enforcer_alarms c WHERE c.id = a.id AND c.status = 'cleared')"
            " ORDER BY at"
        ) as cursor:
            rows = await cursor.fetchall()
        return [msgspec.json.decode(row[0], type=Alarm) for row in rows]

    async def transitions(self, service: str, route: str) -> list[PathEvent]:
        return await read_transitions(self.db, service, route)
