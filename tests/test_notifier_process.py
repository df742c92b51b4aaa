"""`pathwatch notifier -c FILE` as its own process: stops within 2 s of SIGTERM while
idle, delivering or retrying; a restart in the middle of a stream loses nothing;
`/metrics` is served; `--dead-letters` lists what was given up on."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nats.js.errors
import yaml
from nats.aio.msg import Msg

from enforcer.notifier.consumer import consumer_name
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.embedded import free_port
from schemas import subjects
from schemas.codec import decode_message
from schemas.wire import RoleStatus
from tests.conftest import wait_for
from tests.test_notifier_webhook import (
    SECRET,
    expected_keys,
    publish,
    transition,
    unique,
)
from tests.webhook_sink import WebhookSink

PATHWATCH = [sys.executable, "-m", "pathwatch"]
#: Each request to the slow receiver takes this long, so a stream is mid-way for a while.
SLOW_S = 0.15


def write_config(tmp_path: Path, name: str, url: str, service: str) -> Path:
    path = tmp_path / "notifier.yaml"
    notifier = {
        "kind": "webhook",
        "url": url,
        "secret": SECRET,
        "services": [service],
        "retry": {"initial": "100ms", "max": "500ms"},
    }
    config = {
        "services": {service: {"service-routes": {"r0": {"next-hop": {"node": "n1"}}}}},
        "notifiers": {name: notifier},
    }
    path.write_text(yaml.safe_dump(config))
    return path


class NotifierProcess:
    def __init__(self, config: Path, nats_url: str, metrics_port: int) -> None:
        self.args = [
            *PATHWATCH,
            "notifier",
            "-c",
            str(config),
            "--nats",
            nats_url,
            "--metrics-listen",
            f"127.0.0.1:{metrics_port}",
        ]
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> NotifierProcess:
        self.process = subprocess.Popen(self.args, stderr=subprocess.PIPE)
        return self

    def sigterm(self) -> float:
        """Seconds from SIGTERM to exit; the exit status must be 0."""
        assert self.process is not None
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        took = time.monotonic() - sent
        stderr = self.process.stderr.read().decode() if self.process.stderr else ""
        assert status == 0, stderr[-2000:]
        return took

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


async def consumer_open(bus: Bus, name: str) -> bool:
    try:
        await bus.js.consumer_info(subjects.STREAM_ALARMS, consumer_name(name))
    except nats.js.errors.NotFoundError:
        return False
    return True


async def test_notifier_process_sigterm_and_restart_mid_stream(bus: Bus, tmp_path: Path) -> None:
    def slowly(_received: object) -> int:
        time.sleep(SLOW_S)
        return 200

    sink = WebhookSink(slowly).start()
    service, name = unique("svc"), unique("hook")
    config = write_config(tmp_path, name, sink.url, service)
    count = 10
    process = NotifierProcess(config, bus.options.servers[0], free_port()).start()
    try:
        await wait_for(lambda: consumer_open(bus, name), 20, what="the notifier's consumer")
        metrics = await asyncio.to_thread(httpx.get, process.metrics_url, timeout=2)
        assert "pathwatch_notifier_sent_total" in metrics.text
        stops = {"idle": process.sigterm()}

        process.start()
        for n in range(count):
            await publish(bus, transition(service, n, "raised"))
            await publish(bus, transition(service, n, "cleared"))
        await wait_for(lambda: len(sink.taken()) >= 3, 20, what="the stream under way")
        stops["delivering"] = process.sigterm()
        delivered_before = len(sink.taken())
        assert delivered_before < 2 * count, "stopped in the middle of the stream"

        process.start()
        wanted = set(expected_keys(service, count))
        await wait_for(lambda: wanted <= set(sink.deliveries()), 20, what="the rest")
        sink.stop()
        await publish(bus, transition(service, count, "raised"))
        await asyncio.sleep(0.5)  # retrying now: the receiver is down
        stops["retrying"] = process.sigterm()
    finally:
        process.kill()
        sink.stop()
    assert all(took < 2.0 for took in stops.values()), stops
    keys = sink.deliveries()
    assert sorted(sink.dedup_view()) == sorted(expected_keys(service, count))
    assert max(sink.dedup_view().values()) <= 2, "at most the one in flight twice"
    assert keys == sorted(keys, key=expected_keys(service, count).index), "stream order"
    print(f"SIGTERM to exit: {stops}; {delivered_before} delivered before the restart")


async def test_dead_letters_are_listed(bus: Bus, tmp_path: Path) -> None:
    sink = WebhookSink(lambda _r: 410).start()
    service, name = unique("svc"), unique("hook")
    config = write_config(tmp_path, name, sink.url, service)
    process = NotifierProcess(config, bus.options.servers[0], free_port()).start()
    try:
        await wait_for(lambda: consumer_open(bus, name), 20, what="the notifier's consumer")
        await publish(bus, transition(service, 0, "raised"))

        def dead_lettered() -> bool:
            text = httpx.get(process.metrics_url, timeout=2).text
            return 'reason="rejected"} 1.0' in text

        await wait_for(dead_lettered, 20, what="the dead letter counted")
        process.sigterm()
    finally:
        process.kill()
        sink.stop()
    command = [*PATHWATCH, "notifier", "-c", str(config), "--nats", bus.options.servers[0]]
    listing = await asyncio.to_thread(
        subprocess.run,
        [*command, "--dead-letters", "--only", name],
        capture_output=True,
        timeout=30,
    )
    assert listing.returncode == 0, listing.stderr.decode()[-2000:]
    (letter,) = [json.loads(line) for line in listing.stdout.decode().splitlines()]
    assert letter["reason"] == "rejected" and letter["alarm"]["service"] == service
    assert letter["detail"].startswith("HTTP 410")


async def test_a_new_revision_of_notifiers_is_applied_without_a_restart(
    bus: Bus, tmp_path: Path
) -> None:
    """SIGHUP with a changed `notifiers:`: a bad revision (unreadable secret file) is
    refused and the running notifier keeps delivering; a good one replaces it."""
    first, second = WebhookSink(lambda _r: 200).start(), WebhookSink(lambda _r: 200).start()
    service, name, renamed = unique("svc"), unique("hook"), unique("hook")
    config = write_config(tmp_path, name, first.url, service)
    refusals: list[int] = []

    async def on_status(message: Msg) -> None:
        status = decode_message(message.data, RoleStatus)
        refusals.append(status.dropped.get("config:cannot-apply", 0))

    statuses = await bus.nc.subscribe(f"{subjects.STATUS_PREFIX}.notifier.*", cb=on_status)
    process = NotifierProcess(config, bus.options.servers[0], free_port()).start()
    assert process.process is not None
    try:
        await wait_for(lambda: consumer_open(bus, name), 20, what="the first notifier")
        text = config.read_text()
        bad = yaml.safe_load(text)
        hook = bad["notifiers"].pop(name)
        hook.pop("secret")
        hook["secret-file"] = str(tmp_path / "missing-secret")
        bad["notifiers"][renamed] = hook
        config.write_text(yaml.safe_dump(bad))
        process.process.send_signal(signal.SIGHUP)

        await wait_for(lambda: 1 in refusals, 20, what="the bad revision refused (status)")
        await publish(bus, transition(service, 0, "raised"))
        await wait_for(lambda: len(first.taken()) == 1, 20, what="the old notifier delivering")

        good = yaml.safe_load(text)
        hook = good["notifiers"].pop(name)
        hook["url"] = second.url
        good["notifiers"][renamed] = hook
        config.write_text(yaml.safe_dump(good))
        process.process.send_signal(signal.SIGHUP)
        await wait_for(lambda: consumer_open(bus, renamed), 20, what="the renamed notifier")
        await publish(bus, transition(service, 1, "raised"))
        await wait_for(lambda: len(second.taken()) >= 1, 20, what="the new receiver")
        assert process.process.poll() is None
        assert process.sigterm() < 2.0
    finally:
        await statuses.unsubscribe()
        process.kill()
        first.stop()
        second.stop()
    assert len(first.taken()) == 1, "the replaced notifier delivered after the change"
