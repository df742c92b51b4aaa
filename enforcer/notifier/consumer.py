"""The durable consumer of one notifier: alarms in stream order, each acknowledged only
once its receiver took it or it was dead-lettered.

The JetStream consumer `pathwatch-notifier-<name>` on `PATHWATCH_ALARMS`
(filtered to the notifier's services) is created on the first start with
deliver policy `new` (a new notifier does not replay history) and kept by the
server, so a restart resumes exactly after the last acknowledged alarm. It
allows one unacknowledged message (`max_ack_pending` 1): the server hands out
the next alarm only when the previous one is settled, so alarms reach the
receiver in stream order, hence in order per alarm, even across a crash (the
unsettled message comes back first, after `ACK_WAIT_S`) or with two processes
sharing the consumer. While a delivery is retried the message is kept ours
with progress acknowledgements; on stop it is handed back at once (nak), so
the next start does not wait. A receiver that is down holds back only its own
notifier: every notifier has its own consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator

import nats.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.client import JetStreamContext

from enforcer.notifier.attempt import Attempt
from enforcer.notifier.deadletter import make_dead_letter, publish_dead_letter
from enforcer.notifier.metrics import NotifierCounters
from enforcer.notifier.receiver import Receiver
from enforcer.notifier.retry import Delivery, deliver_with_retries
from enforcer.notifier.stopping import Stopped, unless_stopped
from pathwatch.runtime.bus import Bus
from schemas import subjects
from schemas.codec import DecodeError, decode_message
from schemas.config import NotifierConfig
from schemas.wire import Alarm, DeadLetter

log = logging.getLogger("pathwatch.notifier")

CONSUMER_PREFIX = "pathwatch-notifier-"
#: Seconds the server waits for an acknowledgement before handing a message out again
#: (only after a crash: a live notifier sends progress acknowledgements every third of it).
ACK_WAIT_S = 10.0
#: Longest wait of one fetch for the next alarm (a stop is seen within it).
FETCH_WAIT_S = 0.5
#: Pause before opening the consumer again after NATS failed us.
REOPEN_WAIT_S = 1.0
#: Messages fetched per request when replaying handled alarms at start.
SCAN_BATCH = 256

PullSubscription = JetStreamContext.PullSubscription


def consumer_name(notifier: str) -> str:
    return f"{CONSUMER_PREFIX}{notifier}"


def filter_subjects(services: list[str]) -> list[str]:
    """The alarm subjects a notifier follows: its services', or all."""
    if not services:
        return [subjects.ALARM_ALL]
    return [f"{subjects.ALARM_PREFIX}.{service}.*" for service in services]


def _filters(config: ConsumerConfig, services: list[str]) -> ConsumerConfig:
    wanted = filter_subjects(services)
    if len(wanted) == 1:
        config.filter_subject = wanted[0]
    else:
        config.filter_subjects = wanted
    return config


def consumer_config(notifier: str, services: list[str]) -> ConsumerConfig:
    return _filters(
        ConsumerConfig(
            name=consumer_name(notifier),
            durable_name=consumer_name(notifier),
            description=f"pathwatch notifier {notifier}",
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_S,
            max_ack_pending=1,
            max_deliver=-1,
        ),
        services,
    )


async def handled_alarms(bus: Bus, services: list[str], upto: int) -> list[Alarm]:
    """The alarms of the stream up to sequence `upto` (those a consumer has handled),
    oldest first, read through a short-lived consumer; malformed ones are skipped."""
    if upto <= 0:
        return []
    config = _filters(
        ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30.0,
            mem_storage=True,
        ),
        services,
    )
    sub = await bus.js.pull_subscribe(
        filter_subjects(services)[0], stream=subjects.STREAM_ALARMS, config=config
    )
    alarms: list[Alarm] = []
    try:
        while True:
            try:
                messages = await sub.fetch(SCAN_BATCH, timeout=1.0)
            except nats.errors.TimeoutError:
                return alarms  # nothing left
            for message in messages:
                if message.metadata.sequence.stream > upto:
                    return alarms
                with contextlib.suppress(DecodeError):
                    alarms.append(decode_message(message.data, Alarm))
                if message.metadata.sequence.stream == upto or message.metadata.num_pending == 0:
                    return alarms
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()


class NotifierConsumer:
    """Feeds one receiver from its durable consumer until stopped."""

    def __init__(
        self,
        bus: Bus,
        name: str,
        receiver: Receiver,
        config: NotifierConfig,
        counters: NotifierCounters,
        dropped: Counter[str] | None = None,
    ) -> None:
        self.bus = bus
        self.name = name
        self.receiver = receiver
        self.config = config
        self.counters = counters
        #: alarm messages that could not be decoded, `alarm:<reason>` (the role status)
        self.dropped: Counter[str] = dropped if dropped is not None else Counter()
        self._restored = False

    async def open(self) -> tuple[PullSubscription, ConsumerInfo]:
        """Create (or update) the durable consumer and bind to it."""
        info = await self.bus.js.add_consumer(
            subjects.STREAM_ALARMS, consumer_config(self.name, self.config.services)
        )
        sub = await self.bus.js.pull_subscribe_bind(
            durable=consumer_name(self.name), stream=subjects.STREAM_ALARMS
        )
        return sub, info

    async def _reopen(self) -> PullSubscription:
        await asyncio.sleep(REOPEN_WAIT_S)
        return await self._open_until_ok()

    async def _open_until_ok(self) -> PullSubscription:
        """Open the consumer and restore the receiver; try again until it works."""
        while True:
            try:
                sub, info = await self.open()
                if self.receiver.wants_history and not self._restored:
                    floor = info.ack_floor.stream_seq if info.ack_floor else 0
                    handled = await handled_alarms(self.bus, self.config.services, floor or 0)
                    self.receiver.restore(handled)
                    self._restored = True
                return sub
            except (nats.errors.Error, TimeoutError, OSError) as exc:
                log.warning("notifier %s: cannot open its consumer yet: %r", self.name, exc)
            await asyncio.sleep(REOPEN_WAIT_S)

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Deliver alarms until `stop` is set; open the consumer again when NATS fails."""
        opening = self._open_until_ok()
        while True:
            try:
                sub = await unless_stopped(opening, stop)
            except Stopped:
                return
            if ready is not None:
                ready.set()
            try:
                await self._follow(sub, stop)
                return
            except (nats.errors.Error, OSError) as exc:
                log.warning("notifier %s: fetch failed (%r); opening again", self.name, exc)
                opening = self._reopen()
            finally:
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()

    async def _follow(self, sub: PullSubscription, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                messages = await sub.fetch(1, timeout=FETCH_WAIT_S)
            except nats.errors.TimeoutError:
                self.counters.backlog = 0
                continue
            for msg in messages:
                await self.handle(msg, stop)

    async def handle(self, msg: Msg, stop: asyncio.Event) -> None:
        """Deliver or dead-letter one alarm message, then acknowledge it (or, when
        stopped first, hand it back)."""
        self.counters.backlog = msg.metadata.num_pending + 1
        async with self._kept(msg):
            try:
                letter = await unless_stopped(self._process(msg), stop)
            except Stopped:
                await self._hand_back(msg)
                return
            await self._settle(msg, letter, stop)
            self.counters.backlog = msg.metadata.num_pending

    @contextlib.asynccontextmanager
    async def _kept(self, msg: Msg) -> AsyncIterator[None]:
        """Keep `msg` ours (progress acknowledgements every third of `ACK_WAIT_S`) while
        the block runs, and keep the backlog gauge current meanwhile."""

        async def progress() -> None:
            while True:
                await asyncio.sleep(ACK_WAIT_S / 3)
                with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
                    await msg.in_progress()
                    info = await self.bus.js.consumer_info(
                        subjects.STREAM_ALARMS, consumer_name(self.name)
                    )
                    self.counters.backlog = info.num_pending + info.num_ack_pending

        task = asyncio.create_task(progress())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _process(self, msg: Msg) -> DeadLetter | None:
        """Deliver the alarm of `msg`; the dead letter when it was not delivered."""
        seq, subject, kind = msg.metadata.sequence.stream, msg.subject, self.receiver.kind
        try:
            alarm = decode_message(msg.data, Alarm)
        except DecodeError as exc:
            self.dropped[f"alarm:{exc.reason}"] += 1
            return make_dead_letter(
                self.name,
                kind,
                "malformed",
                str(exc),
                raw=msg.data,
                stream_seq=seq,
                subject=subject,
            )
        delivery = await self._deliver(alarm)
        if delivery.delivered:
            self.counters.sent += 1
            return None
        self.receiver.abandon(alarm)
        return make_dead_letter(
            self.name,
            kind,
            delivery.dead_letter_reason,
            delivery.last.detail,
            alarm=alarm,
            attempts=delivery.attempts,
            first_attempt=delivery.first_attempt,
            stream_seq=seq,
            subject=subject,
        )

    async def _deliver(self, alarm: Alarm) -> Delivery:
        def failed(attempt: Attempt) -> None:
            self.counters.failures[attempt.reason] += 1
            log.info(
                "notifier %s: %s %s not delivered: %s",
                self.name,
                alarm.id,
                alarm.status,
                attempt.detail,
            )

        def retried() -> None:
            self.counters.retries += 1

        return await deliver_with_retries(
            lambda: self.receiver.deliver(alarm), self.config.retry, failed, retried
        )

    async def _settle(self, msg: Msg, letter: DeadLetter | None, stop: asyncio.Event) -> None:
        if letter is not None:
            try:
                await unless_stopped(self._store(letter), stop)
            except Stopped:
                await self._hand_back(msg)
                return
            self.counters.dead_letters[letter.reason] += 1
            log.warning(
                "notifier %s: dead-lettered stream message %d (%s): %s",
                self.name,
                letter.stream_seq,
                letter.reason,
                letter.detail,
            )
        try:
            await msg.ack_sync(timeout=2.0)
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            log.warning(
                "notifier %s: acknowledgement of message %d not confirmed (%r); it may be"
                " delivered again",
                self.name,
                msg.metadata.sequence.stream,
                exc,
            )

    async def _store(self, letter: DeadLetter) -> None:
        """Publish `letter`, trying again every second until JetStream takes it."""
        while True:
            try:
                await publish_dead_letter(self.bus, letter)
                return
            except (nats.errors.Error, TimeoutError, OSError) as exc:
                log.warning("notifier %s: cannot store a dead letter yet: %r", self.name, exc)
            await asyncio.sleep(REOPEN_WAIT_S)

    async def _hand_back(self, msg: Msg) -> None:
        with contextlib.suppress(nats.errors.Error, OSError):
            await msg.nak()
