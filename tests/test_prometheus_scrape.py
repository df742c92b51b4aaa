"""A real Prometheus scrapes a running aggregator; every dashboard query returns data.

The aggregator runs alone on the real nats-server, fed MeasurementBatches on
`pw.meas.web.r1`; the test stands in for the enforcer by writing the path's
PathState into KV `pathwatch-paths` and publishing alarms on the stream. Then
every PromQL query of every dashboard panel (template variables substituted by
real values) and every variable's label query go through Prometheus's HTTP API.
The deploy alerting rules are loaded into the same Prometheus and must load.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from aggregator.service import run_aggregator
from pathwatch.grafana.dashboards import build_dashboards, panel_queries, variable_queries
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configfile import parse_config
from schemas import subjects
from schemas.codec import encode
from schemas.wire import Alarm, Measurement, MeasurementBatch, PathState
from tests.conftest import wait_for

PROMETHEUS = shutil.which("prometheus")
RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "rules"
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="the prometheus binary is absent (Debian package `prometheus`, installed by"
    " scripts/test as root)",
)

CONFIG = parse_config(
    """
services:
  web:
    address: [127.0.0.1/32]
    service-routes:
      r1:
        next-hop: {node: n1}
        reachability-detection: {detection-window: 1}
""",
    "prometheus-test.yaml",
).config
VALUES = {
    "$service": "web",
    "$route": "r1",
    "$class": "high",
    "$partition": "0",
    "$__rate_interval": "30s",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _substitute(expr: str) -> str:
    for name, value in sorted(VALUES.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def _batch(seq: int) -> MeasurementBatch:
    now = time.time()
    items = [
        Measurement(
            ts=now,
            protocol="icmp",
            traffic_class="high",
            destination="127.0.0.1",
            probe="ping",
            latency_ms=latency,
        )
        for latency in (1.0, 3.0, 2.0)
    ]
    items.append(
        Measurement(
            ts=now,
            protocol="icmp",
            traffic_class="high",
            destination="127.0.0.1",
            probe="ping",
            outcome="timeout",
        )
    )
    items += [
        Measurement(ts=now, protocol="tcp", traffic_class="high", latency_ms=latency)
        for latency in (4.0, 6.0)
    ]
    return MeasurementBatch(
        agent="prom-agent", node="n1", seq=seq, sent=now, service="web", route="r1", items=items
    )


async def _feed(bus: Bus, stop: asyncio.Event) -> None:
    seq = 0
    while not stop.is_set():
        seq += 1
        await bus.nc.publish(subjects.meas("web", "r1"), encode(_batch(seq)))
        if seq % 10 == 1:
            await bus.nc.publish(subjects.meas("web", "r1"), b"not json")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


async def _query(client: httpx.AsyncClient, expr: str) -> list[Any]:
    answer = await client.get("/api/v1/query", params={"query": expr})
    answer.raise_for_status()
    body = answer.json()
    assert body["status"] == "success", body
    result: list[Any] = body["data"]["result"]
    return result


def _scrape_config(tmp_path: Path, target: str) -> Path:
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {RULES / "pathwatch.rules.yml"}
scrape_configs:
  - job_name: pathwatch
    static_configs:
      - targets: ["{target}"]
""",
        encoding="utf-8",
    )
    return config


async def test_every_dashboard_query_returns_data(bus: Bus, tmp_path: Path) -> None:
    assert PROMETHEUS is not None
    metrics_port = _free_port()
    web_port = _free_port()
    stop = asyncio.Event()
    ready = asyncio.Event()
    alarm_ids = [f"prom-test-{time.time_ns()}", f"prom-test-agent-{time.time_ns()}"]
    aggregator = asyncio.create_task(
        run_aggregator(
            CONFIG, bus, stop=stop, ready=ready, metrics_listen=f"127.0.0.1:{metrics_port}"
        )
    )
    feeder: asyncio.Task[None] | None = None
    log = (tmp_path / "prometheus.log").open("w")
    server = await asyncio.create_subprocess_exec(
        PROMETHEUS,
        f"--config.file={_scrape_config(tmp_path, f'127.0.0.1:{metrics_port}')}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{web_port}",
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}", timeout=5)
    try:
        await wait_for(ready.is_set, 5, what="aggregator subscriptions")
        feeder = asyncio.create_task(_feed(bus, stop))
        paths = await bus.kv(subjects.KV_PATHS)
        await paths.put(
            "web.r1",
            encode(
                PathState(service="web", route="r1", state="up", meets_sla=True, since=time.time())
            ),
        )
        now = time.time()
        await bus.js.publish(
            subjects.alarm("web", "r1"),
            encode(
                Alarm(
                    id=alarm_ids[0],
                    status="raised",
                    service="web",
                    route="r1",
                    protocol="icmp",
                    traffic_class="high",
                    cause="probe-sla",
                    reason="test",
                    raised_at=now,
                )
            ),
        )
        await bus.js.publish(
            subjects.system_alarm("prom-agent"),
            encode(Alarm(id=alarm_ids[1], status="raised", cause="agent-lost", agent="prom-agent")),
        )

        async def prometheus_ready() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return (await client.get("/-/ready")).status_code == 200
            return False

        await wait_for(prometheus_ready, 15, interval=0.1, what="prometheus ready")

        queries = [
            (name, title, _substitute(expr))
            for name, model in build_dashboards().items()
            for title, expr in panel_queries(model)
        ]
        assert len(queries) >= 20
        empty: list[str] = []

        async def all_have_data() -> bool:
            empty.clear()
            for name, title, expr in queries:
                if not await _query(client, expr):
                    empty.append(f"{name} / {title}: {expr}")
            return not empty

        try:
            await wait_for(all_have_data, 25, interval=0.5, what="data for every panel query")
        except AssertionError as error:
            raise AssertionError(f"{error}; still empty: {empty}") from None

        for model in build_dashboards().values():
            for variable, query in variable_queries(model).items():
                match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query)
                assert match is not None, query
                selector, label = _substitute(match.group(1)), match.group(2)
                answer = await client.get(
                    f"/api/v1/label/{label}/values", params={"match[]": selector}
                )
                assert VALUES[f"${variable}"] in answer.json()["data"], (variable, answer.text)

        rules = (await client.get("/api/v1/rules")).json()["data"]["groups"]
        names = {rule["name"] for group in rules for rule in group["rules"]}
        assert {"PathwatchAgentLost", "PathwatchEnforcerWithoutLease"} <= names
        assert all(rule["health"] != "err" for group in rules for rule in group["rules"])
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            cleared_at = time.time()
            await bus.js.publish(
                subjects.alarm("web", "r1"),
                encode(
                    Alarm(id=alarm_ids[0], status="cleared", service="web", cleared_at=cleared_at)
                ),
            )
            await bus.js.publish(
                subjects.system_alarm("prom-agent"),
                encode(Alarm(id=alarm_ids[1], status="cleared", cleared_at=cleared_at)),
            )
        await client.aclose()
        server.terminate()
        try:
            await asyncio.wait_for(server.wait(), 10)
        except TimeoutError:
            server.kill()
            await server.wait()
        log.close()
        for task in (feeder, aggregator):
            if task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 5)
