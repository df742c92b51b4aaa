"""The notifier as NATS user `notifier` of deploy/nats/cluster/accounts.conf, on a real
nats-server that uses that file: everything it does is allowed (durable and
short-lived consumers, fetch and acknowledgements, dead letters and their listing,
its role status) and publishing an alarm is not."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import nats.errors
import pytest

from enforcer.notifier.alertmanager import AlertmanagerReceiver
from enforcer.notifier.deadletter import read_dead_letters
from enforcer.notifier.service import NotifierService
from pathwatch.runtime.bus import Bus, BusOptions
from pathwatch.runtime.embedded import EmbeddedNats
from schemas import subjects
from tests.conftest import wait_for
from tests.test_deploy_cluster import PASSWORD_VARS, password
from tests.test_notifier_webhook import (
    config_of,
    metric,
    publish,
    running,
    transition,
    unique,
    webhook,
)
from tests.webhook_sink import WebhookSink

DEPLOY_NATS = Path(__file__).resolve().parent.parent / "deploy" / "nats"


@pytest.fixture
async def secured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """A nats-server with deploy's accounts and users (one node, loopback)."""
    for var in PASSWORD_VARS:
        monkeypatch.setenv(f"PATHWATCH_NATS_PW_{var}", password(var))
    shutil.copytree(DEPLOY_NATS, tmp_path / "nats")
    config = tmp_path / "nats" / "single.conf"
    config.write_text("include ./cluster/accounts.conf\n")
    server = EmbeddedNats(store_dir=tmp_path / "store", config_file=config).start()
    try:
        yield server.url
    finally:
        server.stop()


async def connect(url: str, user: str) -> Bus:
    return await Bus.connect(
        BusOptions.from_url(url, name=user, user=user, password=password(user.upper()))
    )


async def test_the_notifier_user_can_do_its_work_and_no_more(secured: str) -> None:
    admin = await connect(secured, "admin")
    bus = await connect(secured, "notifier")
    webhook_sink = WebhookSink(lambda r: 422 if b'"r1"' in r.body else 200).start()
    am_sink = WebhookSink().start()
    try:
        await admin.ensure()
        status = await admin.nc.subscribe("pw.status.notifier.*", max_msgs=1)
        service, hook, am = unique("svc"), unique("hook"), unique("am")
        am_config = {"kind": "alertmanager", "url": am_sink.url, "services": [service]}
        config = config_of({hook: webhook(webhook_sink.url, service), am: am_config})
        notifiers = NotifierService(config, bus)
        async with running(notifiers):
            for n in range(2):
                await publish(admin, transition(service, n, "raised"))
            await wait_for(lambda: len(webhook_sink.taken()) == 1, 10, what="r0 delivered")
            dead = "pathwatch_notifier_dead_letters_total"
            await wait_for(lambda: metric(notifiers, dead, notifier=hook) == 1, 10, what="r1 dead")
            await wait_for(lambda: len(am_sink.taken()) == 2, 10, what="both to alertmanager")
            await status.next_msg(timeout=10)
        (letter,) = await read_dead_letters(bus, hook)
        assert letter.reason == "rejected"

        again = NotifierService(config, bus, only=[am])
        async with running(again):  # restores what it had handled: a short-lived consumer
            receiver = again.consumers[0].receiver
            assert isinstance(receiver, AlertmanagerReceiver)
            assert {alarm.route for alarm in receiver.active.values()} == {"r0", "r1"}

        with pytest.raises((TimeoutError, nats.errors.Error)):
            await bus.js.publish(subjects.alarm(service, "r9"), b"{}", timeout=1.0)
        with pytest.raises((TimeoutError, nats.errors.Error)):
            await asyncio.wait_for(bus.js.delete_stream(subjects.STREAM_ALARMS), 2.0)
    finally:
        webhook_sink.stop()
        am_sink.stop()
        await bus.close()
        await admin.close()
