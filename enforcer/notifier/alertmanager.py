"""The `alertmanager` receiver: alarms as alerts through Alertmanager's v2 API.

Each alarm becomes one alert (`POST <url>/api/v2/alerts`):

* labels `alertname="PathwatchAlarm"`, `severity`, `cause`, and those of
  `service`, `route`, `protocol`, `traffic_class` and `agent` that the alarm
  has (a system alarm, about an agent, has no service or route label). Labels
  are the alert's identity, so they hold only what names the failing lane;
* annotations `summary`, `reason`, `alarm_id`: the reason is free text whose
  figures change between the raise and the clear, so as a label it would make
  the clear a different alert from the raise and never resolve it;
* `startsAt` the raise time; `endsAt` only once cleared (the clear time).

Alertmanager keeps alerts in memory only and resolves one that has not been
sent again within its `resolve_timeout`, so every active alarm is sent again
every `resend-interval` (default 60 s, as Prometheus does): an Alertmanager
restart loses no active alarm for longer than that. The set of active alarms
is rebuilt at start from the stream up to where the notifier's consumer had
got to (on its first start: the alarms active then), then follows deliveries.
Deliveries and re-sends are serialised, so a re-send can never overtake a clear
and fire a resolved alert again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import httpx

from enforcer.notifier.attempt import Attempt, post
from enforcer.notifier.stopping import Stopped, unless_stopped
from schemas import subjects
from schemas.config import DEFAULT_RESEND_INTERVAL_S, NotifierConfig
from schemas.wire import Alarm

log = logging.getLogger("pathwatch.notifier.alertmanager")

ALERTNAME = "PathwatchAlarm"
ALERTS_PATH = "/api/v2/alerts"
#: Alerts per re-send request.
RESEND_BATCH = 500


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def alert_labels(alarm: Alarm) -> dict[str, str]:
    """The labels (the identity) of an alarm's alert."""
    system = alarm.service in ("", subjects.SYSTEM_SERVICE)
    candidates = {
        "alertname": ALERTNAME,
        "severity": alarm.severity,
        "cause": alarm.cause,
        "service": "" if system else alarm.service,
        "route": "" if system else alarm.route,
        "protocol": alarm.protocol or "",
        "traffic_class": alarm.traffic_class or "",
        "agent": alarm.agent or (alarm.route if alarm.service == subjects.SYSTEM_SERVICE else ""),
    }
    return {name: value for name, value in candidates.items() if value}


def summary(alarm: Alarm) -> str:
    """One line: where and what."""
    labels = alert_labels(alarm)
    where = "/".join(labels[key] for key in ("service", "route") if key in labels)
    lane = "/".join(labels[key] for key in ("protocol", "traffic_class") if key in labels)
    subject = " ".join(part for part in (where, lane) if part) or f"agent {labels.get('agent')}"
    return f"{subject}: {alarm.cause} ({alarm.severity})"


def alert(alarm: Alarm, firing: bool) -> dict[str, Any]:
    """The v2 `postableAlert` of `alarm`: firing (no `endsAt`) or resolved."""
    body: dict[str, Any] = {
        "labels": alert_labels(alarm),
        "annotations": {"summary": summary(alarm), "reason": alarm.reason, "alarm_id": alarm.id},
        "startsAt": _rfc3339(alarm.raised_at),
    }
    if not firing:
        ended = alarm.cleared_at if alarm.cleared_at is not None else alarm.raised_at
        body["endsAt"] = _rfc3339(max(ended, alarm.raised_at))
    return body


class AlertmanagerReceiver:
    """Delivers alarms to one Alertmanager and keeps its active ones alive there."""

    kind = "alertmanager"
    wants_history = True

    def __init__(
        self,
        name: str,
        config: NotifierConfig,
        client: httpx.AsyncClient,
        resends: Counter[str] | None = None,
    ) -> None:
        self.name = name
        self.url = config.url.rstrip("/") + ALERTS_PATH
        self.resend_interval = config.resend_interval or DEFAULT_RESEND_INTERVAL_S
        self._client = client
        #: alarm id -> the raised alarm, for every alarm delivered and not cleared since
        self.active: dict[str, Alarm] = {}
        #: re-send requests by outcome (`sent`, `failed`)
        self.resends: Counter[str] = resends if resends is not None else Counter()
        self._lock = asyncio.Lock()

    async def _post(self, alerts: list[dict[str, Any]]) -> Attempt:
        body = json.dumps(alerts).encode()
        return await post(self._client, self.url, body, {"Content-Type": "application/json"})

    def _settle(self, alarm: Alarm, delivered: bool) -> None:
        if alarm.status == "cleared":
            self.active.pop(alarm.id, None)
        elif delivered:
            self.active[alarm.id] = alarm

    async def deliver(self, alarm: Alarm) -> Attempt:
        async with self._lock:
            attempt = await self._post([alert(alarm, firing=alarm.status == "raised")])
            if attempt.delivered:
                self._settle(alarm, delivered=True)
            return attempt

    def abandon(self, alarm: Alarm) -> None:
        """A dead-lettered clear ends the alarm here too (Alertmanager resolves it within
        its `resolve_timeout` once the re-sends stop); a dead-lettered raise was never
        active."""
        self._settle(alarm, delivered=False)

    def restore(self, handled: Iterable[Alarm]) -> None:
        for alarm in handled:
            self._settle(alarm, delivered=True)

    async def resend(self) -> None:
        """Send every active alarm again, `RESEND_BATCH` alerts a request. A batch that is
        refused (4xx) is sent again one alert at a time, and the alerts refused on their
        own stop being re-sent, so one bad alert cannot keep the others from firing."""
        async with self._lock:
            alarms = list(self.active.values())
            for start in range(0, len(alarms), RESEND_BATCH):
                batch = alarms[start : start + RESEND_BATCH]
                attempt = await self._resend(batch)
                if attempt.verdict == "reject" and len(batch) > 1:
                    for alarm in batch:
                        await self._resend([alarm])
                elif attempt.verdict == "retry":
                    return  # unreachable or failing: the next round tries again

    async def _resend(self, alarms: list[Alarm]) -> Attempt:
        attempt = await self._post([alert(alarm, firing=True) for alarm in alarms])
        self.resends["sent" if attempt.delivered else "failed"] += 1
        if not attempt.delivered:
            log.warning(
                "%s: re-send of %d alerts failed: %s", self.name, len(alarms), attempt.detail
            )
        if attempt.verdict == "reject" and len(alarms) == 1:
            self.active.pop(alarms[0].id, None)
        return attempt

    async def run_resends(self, stop: asyncio.Event) -> None:
        """Re-send the active alarms now and every `resend_interval` until `stop`."""
        while not stop.is_set():
            if self.active:
                with contextlib.suppress(Stopped):
                    await unless_stopped(self.resend(), stop)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.resend_interval)
