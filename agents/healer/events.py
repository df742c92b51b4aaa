"""The healer's event log: its timeline in memory, an INFO line, and optionally JSON lines.

Every event (`request`, `reselect`, `rerequest-same`, `no-route`, `heal-failed`,
`heal-command`, `liveness-fail`, `liveness-pass`, `backoff-start`, `backoff-end`) is
kept in `EventLog.events` (the newest `KEEP` of them), logged at INFO, and, with a
`sink`, written as one JSON object per line:

    {"ts": 1718000000.123, "service": "web", "event": "reselect", "route": "web-route2",
     "detail": "from web-route1 (data plane down: reselecting; load-balancer)",
     "previous": "web-route1"}

`ts` is Unix time in seconds; `route` is the route the event is about (null when none);
extra fields depend on the event (docs/healer.md lists them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

log = logging.getLogger("pathwatch.healer")

#: Events kept in memory (the oldest half is dropped beyond this).
KEEP = 10_000

JsonValue = str | int | float | bool | None


@dataclass(frozen=True)
class HealEvent:
    """One thing the healer did or saw."""

    ts: float
    kind: str
    route: str | None
    detail: str = ""
    fields: dict[str, JsonValue] = field(default_factory=dict)

    def as_json(self, service: str) -> bytes:
        record: dict[str, Any] = {
            "ts": round(self.ts, 6),
            "service": service,
            "event": self.kind,
            "route": self.route,
            "detail": self.detail,
        }
        record.update(self.fields)
        return msgspec.json.encode(record)


class EventLog:
    """`record(...)` an event: kept, logged and, with a `sink`, written as a JSON line."""

    def __init__(
        self,
        service: str,
        clock: Callable[[], float],
        sink: Callable[[bytes], None] | None = None,
    ) -> None:
        self.service = service
        self.clock = clock
        self.sink = sink
        self.events: list[HealEvent] = []

    def record(
        self, kind: str, route: str | None, detail: str = "", **fields: JsonValue
    ) -> HealEvent:
        event = HealEvent(self.clock(), kind, route, detail, fields)
        if len(self.events) >= KEEP:
            del self.events[: KEEP // 2]
        self.events.append(event)
        log.info("healer %s: %s %s %s", self.service, kind, route or "-", detail)
        if self.sink is not None:
            self.sink(event.as_json(self.service) + b"\n")
        return event

    def count(self, kind: str) -> int:
        return sum(1 for event in self.events if event.kind == kind)
