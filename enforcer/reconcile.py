"""After a crash, the SQLite store catches up with what the streams hold.

The sink publishes an alarm or a transition first and records it in SQLite
after (so a recorded alarm is one that was published: `has_alarm` keeps a
restarted enforcer from publishing it twice). A kill between the two leaves a
message in the stream that the store lacks. At start, before anything new is
written, `reconcile_store` reads the last `RECONCILE_TAIL` messages of
PATHWATCH_ALARMS and PATHWATCH_EVENTS and records what is missing (what is
there stays), so the store agrees with the streams again; one crash leaves at
most one publication unrecorded, far inside that tail. A malformed message is
counted (`reconcile:<reason>`) and skipped; a stream that cannot be read within
`RECONCILE_TIMEOUT_S` is logged and the enforcer starts all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import TypeVar

import nats.errors
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from enforcer.store import EnforcerStore
from pathwatch.runtime.bus import Bus
from schemas import subjects
from schemas.codec import DecodeError, decode_message
from schemas.wire import Alarm, PathEvent

log = logging.getLogger("pathwatch.enforcer")

T = TypeVar("T")

#: Messages read back from the end of each stream at start.
RECONCILE_TAIL = 1000
RECONCILE_TIMEOUT_S = 5.0


async def reconcile_store(store: EnforcerStore, bus: Bus, dropped: Counter[str]) -> int:
    """Record the tail of the alarm and event streams that `store` lacks; how many."""
    try:
        alarms = await read_tail(bus, subjects.STREAM_ALARMS, subjects.ALARM_ALL, Alarm, dropped)
        events = await read_tail(
            bus, subjects.STREAM_EVENTS, subjects.EVENT_ALL, PathEvent, dropped
        )
    except (TimeoutError, nats.errors.Error) as exc:
        log.warning("cannot read the streams back to check the store: %r", exc)
        return 0
    added = await store.record_published(alarms, events)
    if added:
        log.info("store: recorded %d published alarms and transitions it lacked", added)
    return added


async def read_tail(
    bus: Bus, stream: str, subject: str, kind: type[T], dropped: Counter[str]
) -> list[T]:
    """The last RECONCILE_TAIL messages of `stream`, decoded, oldest first."""
    state = (await bus.js.stream_info(stream)).state
    if not state.messages:
        return []
    last = state.last_seq
    start = max(state.first_seq, last - RECONCILE_TAIL + 1)
    messages: list[T] = []
    done = asyncio.Event()

    async def on_message(msg: Msg) -> None:
        try:
            messages.append(decode_message(msg.data, kind))
        except DecodeError as exc:
            dropped[f"reconcile:{exc.reason}"] += 1
        if msg.metadata.sequence.stream >= last:
            done.set()

    subscription = await bus.js.subscribe(
        subject,
        stream=stream,
        cb=on_message,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        config=ConsumerConfig(opt_start_seq=start),
    )
    try:
        await asyncio.wait_for(done.wait(), RECONCILE_TIMEOUT_S)
    finally:
        with contextlib.suppress(nats.errors.Error):
            await subscription.unsubscribe()
    return messages
