"""The notifier against a real nats-server and a real HTTP receiver on loopback.

Alarms are published on PATHWATCH_ALARMS as the enforcer does; the notifier
runs in-process with a webhook receiver (tests/webhook_sink.py). Each test
uses its own service and notifier names, so its durable consumer starts fresh.

The outage test keeps the receiver down `OUTAGE_S` seconds (3 by default, so
the suite stays fast; PATHWATCH_TEST_OUTAGE_S=30 runs the issue's 30 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from enforcer.notifier import consumer as consumer_module
from enforcer.notifier.deadletter import read_dead_letters
from enforcer.notifier.service import NotifierService, NotifierSetupError
from pathwatch.runtime.bus import Bus
from schemas import subjects
from schemas.codec import encode
from schemas.config import PathwatchConfig
from schemas.wire import Alarm
from tests.conftest import wait_for
from tests.webhook_sink import Received, WebhookSink

OUTAGE_S = float(os.environ.get("PATHWATCH_TEST_OUTAGE_S", "3"))
SECRET = "test-shared-secret"
FAST_RETRY = {"initial": 0.1, "max": 0.5}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def config_of(notifiers: dict[str, dict[str, Any]]) -> PathwatchConfig:
    return msgspec.convert({"notifiers": notifiers}, PathwatchConfig)


def webhook(url: str, service: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "webhook",
        "url": url,
        "secret": SECRET,
        "services": [service],
        "timeout": 1.0,
        "retry": FAST_RETRY,
        **extra,
    }


def transition(service: str, n: int, status: str) -> Alarm:
    """Alarm `n` of `service` (route r<n>), raised at a fixed instant, or cleared."""
    raised = 1_700_000_000.0 + n
    return Alarm(
        id=f"{service}.r{n}.tcp.high.error-threshold@{int(raised * 1000)}",
        status=status,  # type: ignore[arg-type]
        service=service,
        route=f"r{n}",
        protocol="tcp",
        traffic_class="high",
        cause="error-threshold",
        reason=f"errors 40 % > 25 % (alarm {n})",
        raised_at=raised,
        cleared_at=raised + 5 if status == "cleared" else None,
    )


async def publish(bus: Bus, alarm: Alarm) -> None:
    await bus.js.publish(
        subjects.alarm(alarm.service, alarm.route),
        encode(alarm),
        headers={"Nats-Msg-Id": f"{alarm.id}:{alarm.status}"},
    )


def expected_keys(service: str, count: int) -> list[str]:
    return [
        f"{transition(service, n, status).id}:{status}"
        for n in range(count)
        for status in ("raised", "cleared")
    ]


@contextlib.asynccontextmanager
async def running(service: NotifierService) -> AsyncIterator[asyncio.Task[None]]:
    """Run `service` until the block ends; it must stop within 2 s."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(service.run(stop, ready))
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 2.0)


def metric(service: NotifierService, name: str, **labels: str) -> float:
    registry = CollectorRegistry()
    registry.register(service.collector())
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


@pytest.fixture
def sink() -> Any:
    receiver = WebhookSink().start()
    yield receiver
    receiver.stop()


def verify(received: Received, secret: str) -> bool:
    """The receiver's check, computed independently of the notifier's code."""
    timestamp = received.headers["X-Pathwatch-Timestamp"]
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + received.body, hashlib.sha256
    ).hexdigest()
    given = received.headers["X-Pathwatch-Signature"].removeprefix("sha256=")
    fresh = abs(time.time() - int(timestamp)) < 300
    return fresh and hmac.compare_digest(expected, given)


async def test_webhook_gets_each_transition_signed(bus: Bus, sink: WebhookSink) -> None:
    service, name = unique("svc"), unique("hook")
    notifiers = NotifierService(config_of({name: webhook(sink.url, service)}), bus)
    async with running(notifiers):
        await publish(bus, transition(service, 0, "raised"))
        await publish(bus, transition(service, 0, "cleared"))
        await wait_for(
            lambda: metric(notifiers, "pathwatch_notifier_sent_total", notifier=name) == 2,
            10,
            what="raise and clear delivered",
        )
    raised, cleared = sink.taken()
    assert [r.json()["status"] for r in (raised, cleared)] == ["raised", "cleared"]
    assert msgspec.json.decode(raised.body, type=Alarm) == transition(service, 0, "raised")
    assert raised.headers["X-Pathwatch-Notifier"] == name
    assert raised.headers["Content-Type"] == "application/json"
    assert all(verify(r, SECRET) for r in (raised, cleared))
    assert not verify(raised, SECRET + "x")


async def test_receiver_down_gets_everything_once_in_order(bus: Bus, sink: WebhookSink) -> None:
    service, name = unique("svc"), unique("hook")
    count = 10
    notifiers = NotifierService(config_of({name: webhook(sink.url, service)}), bus)
    async with running(notifiers):
        await publish(bus, transition(service, 0, "raised"))
        await wait_for(lambda: len(sink.taken()) == 1, 10, what="first raise delivered")
        sink.stop()
        down_at = time.monotonic()
        await publish(bus, transition(service, 0, "cleared"))
        for n in range(1, count):
            await publish(bus, transition(service, n, "raised"))
            await publish(bus, transition(service, n, "cleared"))
        await wait_for(
            lambda: metric(notifiers, "pathwatch_notifier_retries_total", notifier=name) >= 2,
            10,
            what="retries while the receiver is down",
        )
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        assert len(sink.taken()) == 1
        sink.start()
        caught_up = await wait_for(
            lambda: metric(notifiers, "pathwatch_notifier_sent_total", notifier=name) == 2 * count,
            10,
            what="every missed transition",
        )
        await asyncio.sleep(0.3)  # room for a duplicate to show
    keys = sink.deliveries()
    assert sorted(sink.dedup_view()) == sorted(expected_keys(service, count))
    assert max(sink.dedup_view().values()) == 1, "nothing twice"
    for n in range(count):  # per alarm: the raise before the clear
        alarm_id = transition(service, n, "raised").id
        assert keys.index(f"{alarm_id}:raised") < keys.index(f"{alarm_id}:cleared")
    assert metric(notifiers, "pathwatch_notifier_failures_total", reason="connection") >= 1
    print(f"outage {OUTAGE_S:g} s: caught up {caught_up:.2f} s after the receiver came back")


async def test_a_4xx_is_dead_lettered_counted_and_not_retried(bus: Bus) -> None:
    service, name = unique("svc"), unique("hook")
    poisoned = transition(service, 1, "raised")
    sink = WebhookSink(lambda r: 422 if poisoned.id.encode() in r.body else 200).start()
    try:
        notifiers = NotifierService(config_of({name: webhook(sink.url, service)}), bus)
        async with running(notifiers):
            for n in range(3):
                await publish(bus, transition(service, n, "raised"))
            await wait_for(lambda: len(sink.taken()) == 2, 10, what="the good ones delivered")
            await wait_for(
                lambda: (
                    metric(notifiers, "pathwatch_notifier_dead_letters_total", notifier=name) == 1
                ),
                5,
                what="the dead letter counted",
            )
    finally:
        sink.stop()
    assert [r.json()["route"] for r in sink.taken()] == ["r0", "r2"]
    assert metric(notifiers, "pathwatch_notifier_dead_letters_total", reason="rejected") == 1
    assert metric(notifiers, "pathwatch_notifier_failures_total", reason="http-422") == 1
    assert metric(notifiers, "pathwatch_notifier_retries_total", notifier=name) == 0
    letters = await read_dead_letters(bus, name)
    assert len(letters) == 1
    assert letters[0].alarm == poisoned and letters[0].reason == "rejected"
    assert letters[0].detail.startswith("HTTP 422") and letters[0].attempts == 1


async def test_malformed_alarm_is_dead_lettered_and_the_stream_goes_on(
    bus: Bus, sink: WebhookSink
) -> None:
    service, name = unique("svc"), unique("hook")
    notifiers = NotifierService(config_of({name: webhook(sink.url, service)}), bus)
    async with running(notifiers):
        await bus.js.publish(subjects.alarm(service, "r0"), b'{"v": 1, "status": "exploded"}')
        await publish(bus, transition(service, 1, "raised"))
        await wait_for(lambda: len(sink.taken()) == 1, 10, what="the valid alarm delivered")
    assert metric(notifiers, "pathwatch_notifier_dead_letters_total", reason="malformed") == 1
    assert notifiers.role.dropped == {"alarm:schema": 1}  # in the role status too
    (letter,) = await read_dead_letters(bus, name)
    assert letter.reason == "malformed" and '"exploded"' in letter.raw


async def test_one_dead_receiver_does_not_hold_back_another(
    bus: Bus, sink: WebhookSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer_module, "ACK_WAIT_S", 1.0)  # backlog refreshed every 1/3 s
    service, live, dead = unique("svc"), unique("live"), unique("dead")
    config = config_of(
        {
            live: webhook(sink.url, service),
            dead: webhook("http://127.0.0.1:9/never", service),
        }
    )
    notifiers = NotifierService(config, bus)
    async with running(notifiers):
        for n in range(5):
            await publish(bus, transition(service, n, "raised"))
        await wait_for(lambda: len(sink.taken()) == 5, 10, what="the live receiver served")
        assert metric(notifiers, "pathwatch_notifier_sent_total", notifier=dead) == 0
        await wait_for(
            lambda: metric(notifiers, "pathwatch_notifier_backlog_messages", notifier=dead) == 5,
            5,
            what="the dead receiver's backlog: all five",
        )


async def test_a_crash_mid_stream_loses_nothing(
    bus: Bus, sink: WebhookSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first notifier dies without settling its message (its connection closed, no
    nak); a new one on the same durable consumer gets everything, in order."""
    monkeypatch.setattr(consumer_module, "ACK_WAIT_S", 1.0)
    service, name = unique("svc"), unique("hook")
    gate = asyncio.Event()
    count = 6
    config = config_of({name: webhook(sink.url, service)})
    crashing = await Bus.connect(bus.options)
    first = NotifierService(config, crashing)
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop, gate))
    await asyncio.wait_for(gate.wait(), 10)
    sink.stop()  # the first notifier will be retrying its first message when it dies
    for n in range(count):
        await publish(bus, transition(service, n, "raised"))
        await publish(bus, transition(service, n, "cleared"))
    await wait_for(lambda: first.counters[0].failures.total() >= 1, 10, what="a failed try")
    task.cancel()
    await crashing.nc.close()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    sink.start()
    async with running(NotifierService(config, bus)):
        await wait_for(lambda: len(sink.taken()) >= 2 * count, 15, what="everything")
    keys = sink.deliveries()
    assert sorted(set(keys)) == sorted(expected_keys(service, count))
    assert keys == sorted(keys, key=expected_keys(service, count).index), "stream order"


def test_unreadable_secret_files_are_all_reported(tmp_path: Any) -> None:
    config = config_of(
        {
            "a": {
                "kind": "webhook",
                "url": "http://127.0.0.1:1/",
                "secret-file": str(tmp_path / "x"),
            },
            "b": {"kind": "webhook", "url": "http://127.0.0.1:1/", "secret": ""},
        }
    )
    with pytest.raises(NotifierSetupError) as caught:
        NotifierService(config, None)  # type: ignore[arg-type]
    assert len(caught.value.problems) == 2
    assert "notifiers.a.secret-file" in caught.value.problems[0]
