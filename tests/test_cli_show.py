"""`pathwatch show ...` as a user runs it: a real process against the real REST API over a
real nats-server, with path states made by the real enforcer engine.

Exit statuses (docs/cli.md): unknown names 2, unreachable API 3, `alarms --check` 1 when
an alarm is active; the TCP probe says which lanes judge it; routes come in the load
balancer's order.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from enforcer.api import run_api
from enforcer.engine import Engine
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.embedded import free_port
from schemas import subjects
from schemas.wire import Alarm, LaneStats, PathState, WindowStats
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent


def config_text(service: str) -> str:
    return f"""
reachability-profiles:
  default:
    tcp:
      high: {{acceptable-error-threshold: 25}}
tcp-probe-profiles:
  svc: {{probe-interval: 1, number-of-attempts: 1, probe-duration: 0.5,
         probe-address: [127.0.0.1], port: 9, traffic-classes: [high]}}
services:
  {service}:
    address: [127.0.0.1/32]
    service-routes:
      r1:
        next-hop: {{node: n1, interface: lo}}
        cost: 10
        reachability-detection:
          detection-window: 5
          probes: [{{name: api, tcp-probe-profile: svc}}]
      r2:
        next-hop: {{node: n1, interface: lo}}
        cost: 20
        reachability-detection:
          detection-window: 5
          probes: [{{name: api, tcp-probe-profile: svc}}]
"""


def tcp_lane(mean_ms: float, probe: str = "", destination: str = "") -> LaneStats:
    return LaneStats(
        protocol="tcp",
        traffic_class="high",
        probe=probe,
        destination=destination,
        count=10,
        errors=0,
        error_pct=0.0,
        outcomes={"ok": 10},
        latency_min_ms=mean_ms / 2,
        latency_mean_ms=mean_ms,
        latency_max_ms=mean_ms * 2,
    )


def path_states(service: str) -> list[PathState]:
    """Both routes up; the dearer r2 has the lower latency, so the better quality."""
    engine = Engine(parse_config(config_text(service)).config, lambda: 10_001.0)
    states: list[PathState] = []
    for route, mean_ms in (("r1", 1.234), ("r2", 0.4)):
        window = WindowStats(
            service=service,
            route=route,
            window_start=9_995,
            window_end=10_000,
            lanes=[tcp_lane(mean_ms), tcp_lane(mean_ms, "api", "127.0.0.1")],
        )
        states.extend(engine.on_window(window).paths)
    # the enforcer names the aggregator replica whose window it judged (WindowChoice.stamp)
    return [msgspec.structs.replace(state, window_replica="agg-b") for state in states]


@dataclass
class Api:
    url: str
    service: str


@pytest.fixture
async def api(bus: Bus) -> AsyncIterator[Api]:
    """The REST API serving two routes of a fresh service and one raised alarm on r1."""
    service = f"cli-{uuid.uuid4().hex[:8]}"
    paths = await bus.kv(subjects.KV_PATHS)
    for state in path_states(service):
        await paths.put(subjects.path_key(service, state.route), msgspec.json.encode(state))
    alarm = Alarm(
        id=f"{service}-a1",
        status="raised",
        service=service,
        route="r1",
        cause="tte-max",
        reason="test alarm",
        raised_at=time.time(),
    )
    await bus.js.publish(subjects.alarm(service, "r1"), msgspec.json.encode(alarm))
    port = free_port()
    stop = asyncio.Event()
    config = parse_config(config_text(service)).config
    task = asyncio.create_task(run_api(config, bus, stop=stop, listen=f"127.0.0.1:{port}"))
    served = Api(f"http://127.0.0.1:{port}", service)

    async def ready() -> bool:
        code, out, _ = await pathwatch("show", "alarms", "--json", "--service", service, api=served)
        return code == 0 and alarm.id in out and len(await _routes(served)) == 2

    try:
        await wait_for(ready, 20, interval=0.2, what="the API serving the test service")
        yield served
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _routes(api: Api) -> list[str]:
    code, out, _ = await pathwatch("show", "load-balancer", "--json", api=api)
    rows = msgspec.json.decode(out or "[]") if code == 0 else []
    return [row["route"] for row in rows if row["service"] == api.service]


async def pathwatch(*args: str, api: Api | None) -> tuple[int, str, str]:
    """Run the CLI in its own process; (exit status, stdout, stderr)."""
    extra = ["--api", api.url] if api is not None else []
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pathwatch",
        *args,
        *extra,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_unknown_names_exit_2_and_active_alarms_fail_the_check(api: Api) -> None:
    cases = (
        (("show", "service-path", "--service", "nope"), "no service named 'nope'"),
        (("show", "service-path", "--route", "nope"), "no service route named 'nope'"),
        (
            ("show", "service-path", "--service", api.service, "--route", "nope"),
            f"no service route named 'nope' in service '{api.service}'",
        ),
        (("show", "load-balancer", "--service", "nope"), "no service named 'nope'"),
        (("show", "alarms", "--service", "nope"), "no service named 'nope'"),
    )
    results = await asyncio.gather(*(pathwatch(*args, api=api) for args, _ in cases))
    for (args, message), (code, out, err) in zip(cases, results, strict=True):
        assert code == 2, (args, out, err)
        assert message in err and "no service paths yet" not in out
    (checked, out, _), (listed, _, _) = await asyncio.gather(
        pathwatch("show", "alarms", "--check", "--service", api.service, api=api),
        pathwatch("show", "alarms", "--service", api.service, api=api),
    )
    assert checked == 1 and "test alarm" in out
    assert listed == 0


async def test_an_unreachable_api_exits_3() -> None:
    closed = Api(f"http://127.0.0.1:{free_port()}", "none")
    code, _, err = await pathwatch("show", "alarms", "--check", api=closed)
    assert code == 3 and "cannot reach the API" in err


async def test_min_how_the_tcp_probe_is_judged_and_the_load_balancer_order(api: Api) -> None:
    code, out, err = await pathwatch(
        "show", "service-path", "--service", api.service, "--route", "r1", api=api
    )
    assert code == 0, err
    header = next(line for line in out.splitlines() if line.lstrip().startswith("Proto"))
    assert header.split()[:12] == [
        "Proto", "Class", "Source", "Target", "State", "SLA", "Judged",
        "N", "Err%", "Loss%", "Min", "Mean",
    ]  # fmt: skip
    [aggregate] = [line for line in out.splitlines() if "(all)" in line and "1.23" in line]
    assert aggregate.split()[6:7] == ["profile"] and "0.62" in aggregate  # min = mean / 2
    [probe_row] = [line for line in out.splitlines() if line.lstrip().startswith("api ")]
    assert "lanes tcp/high" in probe_row and " no " not in probe_row
    [window_from] = [line for line in out.splitlines() if "Window-From" in line]
    assert window_from.split() == ["Window-From", "agg-b"]
    # the route has an active probe: it comes back only when its probes have passed
    [recovery] = [line for line in out.splitlines() if "Recovery" in line]
    assert recovery.split() == ["Recovery", "probe-verified", "Held", "-"]
    # r2 has the better quality score (lower latency); both meet the SLA, so cost decides
    assert await _routes(api) == ["r1", "r2"]
