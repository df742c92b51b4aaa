"""The drops and consumer restarts of every role, in the aggregator's `/metrics`.

Each role publishes a `RoleStatus` on `pw.status.<role>.<instance>`
(`pathwatch.runtime.status`); `watch_status` keeps the latest of each instance in a
`RoleBook` (at most `limits.MAX_STATUS_SOURCES`, the instance heard least
recently forgotten first) and `role_families` turns them into:

* `pathwatch_dropped_messages_total{role, instance, input, reason}`: inputs a
  role dropped (`input`: subject kind, KV bucket or output; `reason`: why);
* `pathwatch_consumer_restarts_total{role, instance, consumer}`: supervised
  consumers that ended and were started again.

Status messages are input too: malformed ones are counted in `dropped` under
`status:<reason>` (the exporter's own role, `aggregator`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator

from nats.aio.msg import Msg
from prometheus_client.core import CounterMetricFamily, Metric

from pathwatch.runtime.bus import Bus
from pathwatch.runtime.status import LatestBook, decode_status
from schemas import subjects
from schemas.limits import MAX_STATUS_SOURCES
from schemas.wire import RoleStatus


class RoleBook:
    """The latest status of each role instance, bounded."""

    def __init__(self, max_sources: int = MAX_STATUS_SOURCES) -> None:
        self.statuses: LatestBook[tuple[str, str], RoleStatus] = LatestBook(max_sources)

    def seen(self, status: RoleStatus) -> None:
        self.statuses.seen((status.role, status.instance), status)


async def watch_status(
    bus: Bus, book: RoleBook, stop: asyncio.Event, dropped: Counter[str]
) -> None:
    """Follow `pw.status.*.*` into `book` until stop."""

    async def on_status(msg: Msg) -> None:
        status = decode_status(msg.subject, msg.data, dropped)
        if status is not None:
            book.seen(status)

    subscription = await bus.nc.subscribe(subjects.STATUS_ALL, cb=on_status)
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()


def role_families(book: RoleBook) -> Iterator[Metric]:
    """The two families above, from the statuses in `book`."""
    dropped = CounterMetricFamily(
        "pathwatch_dropped_messages",
        "Inputs a role dropped, by input and reason",
        labels=("role", "instance", "input", "reason"),
    )
    restarts = CounterMetricFamily(
        "pathwatch_consumer_restarts",
        "Consumers of a role that ended and were started again",
        labels=("role", "instance", "consumer"),
    )
    for status in list(book.statuses.values()):
        for key, value in status.dropped.items():
            source, _, reason = key.rpartition(":")
            dropped.add_metric([status.role, status.instance, source, reason], value)
        for consumer, value in status.restarts.items():
            restarts.add_metric([status.role, status.instance, consumer], value)
    yield dropped
    yield restarts
