"""A role's drop and restart counters, published as `RoleStatus` for /metrics.

Every role that consumes input (enforcer, router, API, aggregator, healer)
counts what it drops by `<input>:<reason>` and the restarts of its supervised
consumers in a `RoleCounters`, and `publish_status` sends them on
`pw.status.<role>.<instance>` every `limits.STATUS_INTERVAL_S` (and once when
it stops). The aggregator's metrics exporter shows them, so the drops of every
role reach one `/metrics` in every deployment (all-in-one or one process per
role) without a scrape port per role (docs/metrics.md, "Drops").

A role that follows a config source (`RoleCounters.live`) also reports the config
it runs (digest and KV revision), the revisions it refused (`config:<reason>`),
its host and pathwatch version, and sends its status at once when that changes:
`pathwatch show fleet` reads them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Generic, TypeVar

import nats.errors

from pathwatch.runtime.aio import wait_any
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configsource import LiveConfig
from schemas import subjects
from schemas.codec import DecodeError, decode_message, encode
from schemas.limits import MAX_LABEL_CHARS, MAX_STATUS_COUNTERS, STATUS_INTERVAL_S
from schemas.names import subject_token
from schemas.wire import RoleStatus

log = logging.getLogger("pathwatch.status")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: A role instance's name as a subject token.
instance_name = subject_token


@dataclass
class RoleCounters:
    """What one role instance dropped (`<input>:<reason>`) and restarted (consumer name),
    and the config it runs (`live`, when it follows a config source)."""

    role: str
    instance: str
    dropped: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)
    live: LiveConfig | None = None

    def status(self, now: float) -> RoleStatus:
        dropped = self.dropped
        if self.live is not None and self.live.refused:
            dropped = Counter(dropped)
            dropped.update(self.live.counted())
        return RoleStatus(
            role=self.role,
            instance=instance_name(self.instance),
            ts=now,
            dropped=_bounded(dropped),
            restarts=_bounded(self.restarts),
            host=socket.gethostname()[:MAX_LABEL_CHARS],
            version=pathwatch_version(),
            config=self.live.current.mark if self.live is not None else None,
        )


@cache
def pathwatch_version() -> str:
    """The installed pathwatch version ("" when it is not installed as a package)."""
    try:
        return version("pathwatch")[:MAX_LABEL_CHARS]
    except PackageNotFoundError:
        return ""


class LatestBook(OrderedDict[K, V], Generic[K, V]):
    """The latest value of each key, at most `limit` keys: the one heard least recently
    is forgotten first (the books of role statuses and of the fleet)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def seen(self, key: K, value: V) -> None:
        self.pop(key, None)
        self[key] = value
        if len(self) > self.limit:
            self.popitem(last=False)


def decode_status(subject: str, data: bytes, dropped: Counter[str]) -> RoleStatus | None:
    """The RoleStatus received on `subject`, or None with the drop counted
    (`status:<reason>`; `status:subject` when it names another role or instance)."""
    try:
        status = decode_message(data, RoleStatus)
    except DecodeError as exc:
        dropped[f"status:{exc.reason}"] += 1
        return None
    if subject != subjects.status(status.role, status.instance):
        dropped["status:subject"] += 1
        return None
    return status


def _bounded(counts: Counter[str]) -> dict[str, int]:
    return {key[:128]: value for key, value in counts.most_common(MAX_STATUS_COUNTERS)}


async def publish_status(
    bus: Bus,
    counters: RoleCounters,
    stop: asyncio.Event,
    interval: float = STATUS_INTERVAL_S,
    refresh: Callable[[], None] | None = None,
) -> None:
    """Publish `counters` every `interval` seconds until `stop`, then once more, and at
    once when the config it runs changes; `refresh()`, when given, brings them up to
    date before each publication (for a role that keeps its counts elsewhere)."""
    subject = subjects.status(counters.role, instance_name(counters.instance))
    changed = counters.live.changed if counters.live is not None else asyncio.Event()
    while True:
        changed.clear()
        if refresh is not None:
            refresh()
        if bus.nc.is_connected:
            try:
                await bus.nc.publish(subject, encode(counters.status(time.time())))
            except (nats.errors.Error, OSError) as exc:
                log.debug("status of %s not published: %s", subject, exc)
        if stop.is_set():
            return
        await wait_any((stop, changed), interval)
