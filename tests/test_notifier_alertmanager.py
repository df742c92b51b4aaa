"""The notifier against a real Alertmanager (Debian `prometheus-alertmanager`) on loopback.

Alertmanager is started by the test with clustering off and a route to a
webhook receiver served by the test (tests/webhook_sink.py), so what an
operator's pager would get is what the test reads: a raise arrives as firing,
a clear as resolved, and an Alertmanager restart (it keeps alerts in memory
only) loses no active alarm because the notifier re-sends them.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from enforcer.notifier.service import NotifierService
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.embedded import free_port
from tests.conftest import wait_for
from tests.test_notifier_webhook import config_of, metric, publish, running, transition, unique
from tests.webhook_sink import WebhookSink

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = pytest.mark.skipif(
    ALERTMANAGER is None,
    reason="the alertmanager binary is absent (Debian package `prometheus-alertmanager`,"
    " installed by scripts/test as root)",
)

ROUTING = """
route:
  receiver: test
  group_by: ['...']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test
    webhook_configs:
      - url: {url}
        send_resolved: true
"""


class Alertmanager:
    """One prometheus-alertmanager process on 127.0.0.1, no clustering."""

    def __init__(self, directory: Path, webhook_url: str) -> None:
        self.directory = directory
        self.port = free_port("127.0.0.1")
        self.config = directory / "alertmanager.yml"
        self.config.write_text(ROUTING.format(url=webhook_url))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Alertmanager:
        assert ALERTMANAGER is not None
        log = (self.directory / "alertmanager.log").open("ab")
        self.process = subprocess.Popen(
            [
                ALERTMANAGER,
                f"--config.file={self.config}",
                f"--storage.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=0.5).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("alertmanager not ready: " + self.log()[-2000:])

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            process.wait(5)

    def log(self) -> str:
        return (self.directory / "alertmanager.log").read_text(errors="replace")

    def alerts(self) -> list[dict[str, Any]]:
        """Alertmanager's active alerts (GET /api/v2/alerts)."""
        answer = httpx.get(f"{self.url}/api/v2/alerts", params={"active": "true"}, timeout=2)
        answer.raise_for_status()
        result: list[dict[str, Any]] = answer.json()
        return result


@pytest.fixture
def pager() -> Iterator[WebhookSink]:
    """What Alertmanager notifies: the operator's pager."""
    sink = WebhookSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def alertmanager(tmp_path: Path, pager: WebhookSink) -> Iterator[Alertmanager]:
    manager = Alertmanager(tmp_path, pager.url).start()
    yield manager
    manager.stop()


def notified(pager: WebhookSink, status: str) -> list[dict[str, Any]]:
    """Every alert Alertmanager notified with `status` (firing / resolved)."""
    return [
        alert
        for received in pager.taken()
        for alert in received.json()["alerts"]
        if alert["status"] == status
    ]


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def am_notifier(alertmanager: Alertmanager, service: str, resend: float) -> dict[str, Any]:
    return {
        "kind": "alertmanager",
        "url": alertmanager.url,
        "services": [service],
        "resend-interval": resend,
        "retry": {"initial": 0.1, "max": 0.5},
    }


async def test_raise_fires_and_clear_resolves(
    bus: Bus, alertmanager: Alertmanager, pager: WebhookSink
) -> None:
    service, name = unique("svc"), unique("am")
    notifiers = NotifierService(config_of({name: am_notifier(alertmanager, service, 60)}), bus)
    raised, cleared = transition(service, 0, "raised"), transition(service, 0, "cleared")
    async with running(notifiers):
        await publish(bus, raised)
        await wait_for(lambda: notified(pager, "firing"), 10, what="a firing notification")
        await publish(bus, cleared)
        await wait_for(lambda: notified(pager, "resolved"), 10, what="a resolved notification")
        assert metric(notifiers, "pathwatch_notifier_sent_total", notifier=name) == 2
    (firing,), (resolved,) = notified(pager, "firing"), notified(pager, "resolved")
    assert firing["labels"] == {
        "alertname": "PathwatchAlarm",
        "service": service,
        "route": "r0",
        "protocol": "tcp",
        "traffic_class": "high",
        "severity": "major",
        "cause": "error-threshold",
    }
    assert firing["annotations"]["reason"] == raised.reason
    assert firing["annotations"]["alarm_id"] == raised.id
    assert _ts(firing["startsAt"]) == pytest.approx(raised.raised_at)
    assert resolved["labels"] == firing["labels"]
    assert cleared.cleared_at is not None
    assert _ts(resolved["endsAt"]) == pytest.approx(cleared.cleared_at)


async def test_an_alertmanager_restart_loses_no_active_alarm(
    bus: Bus, alertmanager: Alertmanager
) -> None:
    service, name = unique("svc"), unique("am")
    config = config_of({name: am_notifier(alertmanager, service, 0.5)})
    notifiers = NotifierService(config, bus)
    # active before the notifier first started: a new Alertmanager notifier sends it too
    await publish(bus, transition(service, 5, "raised"))
    async with running(notifiers):
        await publish(bus, transition(service, 0, "raised"))
        await publish(bus, transition(service, 1, "raised"))
        await publish(bus, transition(service, 1, "cleared"))

        def active_routes() -> set[str]:
            return {a["labels"].get("route", "") for a in alertmanager.alerts()}

        await wait_for(lambda: active_routes() == {"r0", "r5"}, 10, what="r1 resolved")
        alertmanager.stop()
        alertmanager.start()  # empty: Alertmanager does not keep alerts across restarts
        await wait_for(lambda: active_routes() == {"r0", "r5"}, 10, what="active again")
        await wait_for(
            lambda: metric(notifiers, "pathwatch_notifier_resends_total", outcome="sent") >= 1,
            5,
            what="the re-send counted",
        )
        assert metric(notifiers, "pathwatch_notifier_active_alerts", notifier=name) == 2
    # a notifier started afresh rebuilds its active alarms from what it had handled
    alertmanager.stop()
    alertmanager.start()
    async with running(NotifierService(config, bus)):
        await wait_for(lambda: active_routes() == {"r0", "r5"}, 10, what="re-sent after a restart")
