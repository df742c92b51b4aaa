"""Dead letters: alarm messages a notifier gave up on, kept in `PATHWATCH_DEAD_LETTERS`.

Each is a `DeadLetter` on `pw.deadletter.<notifier>` carrying the alarm (or the
start of a malformed payload), why (`rejected`, `expired`, `malformed`), the
receiver's last answer, the attempts and the alarm's stream sequence. The
stream keeps them 30 days (at most 64 MiB, oldest dropped first). They are
listed by `pathwatch notifier --dead-letters` (`read_dead_letters`) or any
NATS client (`nats stream view PATHWATCH_DEAD_LETTERS`). `Nats-Msg-Id` is
`<notifier>:<stream sequence>`, so a notifier that dead-letters the same
message twice (after a restart) stores it once.
"""

from __future__ import annotations

import time

import msgspec
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from pathwatch.runtime.bus import Bus
from schemas import subjects
from schemas.codec import DecodeError, decode_message, encode
from schemas.limits import (
    MAX_MESSAGE_BYTES,
    MAX_REASON_CHARS,
    MAX_TEXT_CHARS,
    PAYLOAD_HEADROOM_BYTES,
    clip,
)
from schemas.wire import Alarm, DeadLetter


def make_dead_letter(
    notifier: str,
    kind: str,
    reason: str,
    detail: str,
    *,
    alarm: Alarm | None = None,
    raw: bytes = b"",
    attempts: int = 0,
    stream_seq: int = 0,
    subject: str = "",
    first_attempt: float = 0.0,
) -> DeadLetter:
    """A dead letter that always fits in a NATS message: its texts are clipped
    (`limits.MAX_TEXT_CHARS`; the alarm's reason to `limits.MAX_REASON_CHARS`), and an
    alarm still too big is kept only as the start of its JSON in `raw`."""
    if alarm is not None:
        alarm = msgspec.structs.replace(alarm, reason=clip(alarm.reason, MAX_REASON_CHARS))
        encoded = encode(alarm)
        if len(encoded) > MAX_MESSAGE_BYTES - 2 * PAYLOAD_HEADROOM_BYTES:
            alarm, raw = None, encoded
    return DeadLetter(
        notifier=notifier,
        kind=kind,
        reason=reason,  # type: ignore[arg-type]
        detail=clip(detail),
        attempts=attempts,
        stream_seq=stream_seq,
        subject=subject,
        alarm=alarm,
        raw=clip(raw[:MAX_TEXT_CHARS].decode(errors="replace")),
        first_attempt=first_attempt,
        dead_at=time.time(),
    )


async def publish_dead_letter(bus: Bus, letter: DeadLetter) -> None:
    """Store `letter` (raises when JetStream does not acknowledge it)."""
    await bus.js.publish(
        subjects.deadletter(letter.notifier),
        encode(letter),
        stream=subjects.STREAM_DEAD_LETTERS,
        headers={"Nats-Msg-Id": f"{letter.notifier}:{letter.stream_seq}"},
    )


async def read_dead_letters(
    bus: Bus, notifier: str | None = None, limit: int = 100, timeout: float = 2.0
) -> list[DeadLetter]:
    """The last `limit` dead letters (of `notifier`, or of every notifier), oldest first;
    undecodable records are skipped."""
    subject = subjects.deadletter(notifier) if notifier else subjects.DEADLETTER_ALL
    info = await bus.js.stream_info(subjects.STREAM_DEAD_LETTERS, subjects_filter=subject)
    stored = sum((info.state.subjects or {}).values())
    if stored == 0:
        return []
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=30.0,
        mem_storage=True,
    )
    sub = await bus.js.pull_subscribe(subject, stream=subjects.STREAM_DEAD_LETTERS, config=config)
    letters: list[DeadLetter] = []
    try:
        seen = 0
        while seen < stored:
            messages = await sub.fetch(min(stored - seen, 256), timeout=timeout)
            for message in messages:
                seen += 1
                try:
                    letters.append(decode_message(message.data, DeadLetter))
                except DecodeError:
                    continue
    finally:
        await sub.unsubscribe()
    return letters[-limit:]
