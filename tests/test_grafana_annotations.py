"""Alarms published on the real nats-server become Grafana annotations, posted to a
recording server that answers like the documented annotations API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from pathwatch.grafana.annotations import AnnotatorCounters, run_annotator
from pathwatch.grafana.provision import connect
from pathwatch.runtime.bus import Bus
from schemas import subjects
from schemas.codec import encode
from schemas.wire import Alarm
from tests.conftest import wait_for
from tests.grafana_recorder import GrafanaRecorder

TOKEN = "annotations-token"


@pytest.fixture
def grafana() -> Iterator[GrafanaRecorder]:
    recorder = GrafanaRecorder(TOKEN).start()
    try:
        yield recorder
    finally:
        recorder.stop()


async def test_raised_and_cleared_alarms_become_annotations(
    bus: Bus, grafana: GrafanaRecorder
) -> None:
    stop = asyncio.Event()
    ready = asyncio.Event()
    counters = AnnotatorCounters()
    task = asyncio.create_task(
        run_annotator(bus, connect(grafana.url, TOKEN), stop=stop, counters=counters, ready=ready)
    )
    alarm_id = f"annotate-{time.time_ns()}"
    raised_at = time.time()
    raised = Alarm(
        id=alarm_id,
        status="raised",
        severity="critical",
        service="annot",
        route="r1",
        protocol="tcp",
        traffic_class="high",
        cause="error-threshold",
        reason="errors 40 % > 25 %",
        raised_at=raised_at,
    )
    cleared = Alarm(
        id=alarm_id,
        status="cleared",
        severity="critical",
        service="annot",
        route="r1",
        protocol="tcp",
        traffic_class="high",
        cause="error-threshold",
        raised_at=raised_at,
        cleared_at=raised_at + 12.5,
    )
    try:
        await wait_for(ready.is_set, 5, what="annotator subscribed")
        await bus.js.publish(subjects.alarm("annot", "r1"), encode(raised))
        await bus.js.publish(subjects.alarm("annot", "r1"), b"{not an alarm")
        await bus.js.publish(subjects.alarm("annot", "r1"), encode(cleared))
        await wait_for(lambda: counters.posted == 2, 10, what="two annotations posted")
        assert counters.malformed["json"] == 1

        posts = [r for r in grafana.requests if (r.method, r.path) == ("POST", "/api/annotations")]
        assert len(posts) == 2
        first, second = (request.body for request in posts)
        assert first["time"] == first["timeEnd"] == round(raised_at * 1000)
        assert "raised" in first["tags"] and "pathwatch" in first["tags"]
        assert {"severity:critical", "cause:error-threshold", "service:annot", "route:r1"} <= set(
            first["tags"]
        )
        assert "annot/r1 tcp/high" in first["text"] and "errors 40 %" in first["text"]
        assert second["time"] == round(raised_at * 1000)
        assert second["timeEnd"] == round((raised_at + 12.5) * 1000)
        assert "cleared" in second["tags"]
        assert all(request.authorization == f"Bearer {TOKEN}" for request in posts)
        assert len(grafana.state.annotations) == 2

        grafana.token = "rotated"
        await bus.js.publish(subjects.alarm("annot", "r1"), encode(raised))
        await wait_for(lambda: counters.failed == 1, 10, what="a refused post counted")
        grafana.token = TOKEN
        await bus.js.publish(
            subjects.system_alarm("lost-agent"),
            encode(
                Alarm(
                    id=f"{alarm_id}-agent",
                    status="raised",
                    cause="agent-lost",
                    agent="lost-agent",
                    raised_at=time.time(),
                )
            ),
        )
        await wait_for(
            lambda: counters.posted == 3, 10, what="the follower goes on after a failure"
        )
        assert "agent lost-agent" in grafana.state.annotations[-1]["text"]
        assert "agent:lost-agent" in grafana.state.annotations[-1]["tags"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        # leave no active alarm behind for other tests that replay the stream
        await bus.js.publish(subjects.alarm("annot", "r1"), encode(cleared))
        await bus.js.publish(
            subjects.system_alarm("lost-agent"),
            encode(Alarm(id=f"{alarm_id}-agent", status="cleared", cleared_at=time.time())),
        )
