"""Post raised and cleared alarms as Grafana annotations (`grafana.annotate-alarms`).

Follows the `PATHWATCH_ALARMS` stream (new alarms only, through an ordered
consumer) and posts every alarm through the annotations API
(`POST /api/annotations`): a raised alarm as a point at `raised_at`, a
cleared one as a region from `raised_at` to `cleared_at`. Every annotation
is tagged `pathwatch`, `alarm`, its status and `key:value` tags for severity,
cause, service, route and agent, so the dashboards' annotation query shows
them. Malformed alarm messages are counted by reason and dropped; a failed
post is logged and counted, and the follower goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from grafana_client.api import GrafanaApi
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from pathwatch.grafana.dashboards import ANNOTATION_TAG
from pathwatch.grafana.provision import connect
from pathwatch.runtime.bus import Bus
from schemas import subjects
from schemas.codec import DecodeError, decode_message
from schemas.config import PathwatchConfig
from schemas.wire import Alarm

log = logging.getLogger("pathwatch.grafana.annotations")


@dataclass
class AnnotatorCounters:
    posted: int = 0
    failed: int = 0
    malformed: Counter[str] = field(default_factory=Counter)


def alarm_tags(alarm: Alarm) -> list[str]:
    """Tags of the annotation of one alarm."""
    tags = [ANNOTATION_TAG, "alarm", alarm.status, f"severity:{alarm.severity}"]
    for key, value in (
        ("cause", alarm.cause),
        ("service", alarm.service),
        ("route", alarm.route),
        ("agent", alarm.agent),
    ):
        if value:
            tags.append(f"{key}:{value}")
    return tags


def alarm_text(alarm: Alarm) -> str:
    """One line saying what happened."""
    where = f"{alarm.service}/{alarm.route}" if alarm.service else f"agent {alarm.agent}"
    lane = "/".join(part for part in (alarm.protocol, alarm.traffic_class) if part)
    subject = f"{where} {lane}".strip()
    text = f"{alarm.severity} alarm {alarm.status}: {subject} ({alarm.cause or 'unknown cause'})"
    return f"{text}: {alarm.reason}" if alarm.reason else text


def annotation_request(alarm: Alarm) -> dict[str, Any]:
    """Keyword arguments of `add_annotation` for one alarm (times in epoch milliseconds)."""
    raised_ms = round(alarm.raised_at * 1000)
    if alarm.status == "cleared" and alarm.cleared_at is not None:
        time_from, time_to = raised_ms, round(alarm.cleared_at * 1000)
    else:
        time_from = time_to = raised_ms
    return {
        "time_from": time_from,
        "time_to": time_to,
        "tags": alarm_tags(alarm),
        "text": alarm_text(alarm),
    }


def post_alarm(api: GrafanaApi, alarm: Alarm) -> int | None:
    """Post one alarm; returns the annotation id Grafana gave it."""
    answer: dict[str, Any] = api.annotations.add_annotation(  # type: ignore[no-untyped-call]
        **annotation_request(alarm)
    )
    identifier = answer.get("id")
    return int(identifier) if identifier is not None else None


async def run_annotator(
    bus: Bus,
    api: GrafanaApi,
    *,
    stop: asyncio.Event,
    counters: AnnotatorCounters | None = None,
    ready: asyncio.Event | None = None,
) -> AnnotatorCounters:
    """Post every new alarm of the stream as an annotation until `stop` is set."""
    seen = counters or AnnotatorCounters()
    queue: asyncio.Queue[Alarm] = asyncio.Queue()

    async def on_alarm(msg: Msg) -> None:
        try:
            queue.put_nowait(decode_message(msg.data, Alarm))
        except DecodeError as error:
            seen.malformed[error.reason] += 1
            log.warning("dropped a malformed alarm on %s: %s", msg.subject, error)

    async def poster() -> None:
        while True:
            alarm = await queue.get()
            try:
                await asyncio.to_thread(post_alarm, api, alarm)
                seen.posted += 1
            except Exception as error:
                seen.failed += 1
                log.warning("cannot post alarm %s to Grafana: %s", alarm.id, error)

    subscription = await bus.js.subscribe(
        subjects.ALARM_ALL,
        stream=subjects.STREAM_ALARMS,
        cb=on_alarm,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.NEW,
    )
    worker = asyncio.create_task(poster())
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
    return seen


async def run_configured_annotator(
    config: PathwatchConfig, bus: Bus, *, stop: asyncio.Event
) -> AnnotatorCounters | None:
    """Run the annotator when `grafana.annotate-alarms` and `grafana.url` are set, else return.

    For `pathwatch up` and the per-role processes: one call, nothing to decide.
    """
    settings = config.grafana
    if not settings.annotate_alarms:
        return None
    if not settings.url:
        log.warning("grafana.annotate-alarms is on but grafana.url is not set; not annotating")
        return None
    log.info("posting alarms as annotations to %s", settings.url)
    return await run_annotator(bus, connect(settings.url, settings.token), stop=stop)
