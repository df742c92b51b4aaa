"""A role's drop and restart counters, published as `RoleStatus` for /metrics.

Every role that consumes input (enforcer, router, API, aggregator, healer)
counts what it drops by `<input>:<reason>` and the restarts of its supervised
consumers in a `RoleCounters`, and `publish_status` sends them on
`pw.status.<role>.<instance>` every `limits.STATUS_INTERVAL_S` (and once when
it stops). The aggregator's metrics exporter shows them, so the drops of every
role reach one `/metrics` in every deployment (all-in-one or one process per
role) without a scrape port per role (docs/metrics.md, "Drops").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import nats.errors

from pathwatch.bus import Bus
from schemas import subjects
from schemas.codec import encode
from schemas.limits import MAX_STATUS_COUNTERS, STATUS_INTERVAL_S
from schemas.names import subject_token
from schemas.wire import RoleStatus

log = logging.getLogger("pathwatch.status")

#: A role instance's name as a subject token.
instance_name = subject_token


@dataclass
class RoleCounters:
    """What one role instance dropped (`<input>:<reason>`) and restarted (consumer name)."""

    role: str
    instance: str
    dropped: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)

    def status(self, now: float) -> RoleStatus:
        return RoleStatus(
            role=self.role,
            instance=instance_name(self.instance),
            ts=now,
            dropped=_bounded(self.dropped),
            restarts=_bounded(self.restarts),
        )


def _bounded(counts: Counter[str]) -> dict[str, int]:
    return {key[:128]: value for key, value in counts.most_common(MAX_STATUS_COUNTERS)}


async def publish_status(
    bus: Bus,
    counters: RoleCounters,
    stop: asyncio.Event,
    interval: float = STATUS_INTERVAL_S,
    refresh: Callable[[], None] | None = None,
) -> None:
    """Publish `counters` every `interval` seconds until `stop`, then once more;
    `refresh()`, when given, brings them up to date before each publication (for a role
    that keeps its counts elsewhere)."""
    subject = subjects.status(counters.role, instance_name(counters.instance))
    while True:
        if refresh is not None:
            refresh()
        if bus.nc.is_connected:
            try:
                await bus.nc.publish(subject, encode(counters.status(time.time())))
            except (nats.errors.Error, OSError) as exc:
                log.debug("status of %s not published: %s", subject, exc)
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
