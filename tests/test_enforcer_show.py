"""`pathwatch show service-path`: probe and passive figures side by side per
(protocol, class), in the table and in `--json`, from a PathState the real
engine produced."""

import asyncio
import io
import json
from typing import Any

import httpx
import msgspec
import pytest
from rich.console import Console

from enforcer.api import run_api
from enforcer.engine import Engine
from pathwatch.commands import show
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.embedded import free_port
from schemas import subjects
from schemas.wire import LaneStats, WindowStats
from tests.conftest import wait_for

CONFIG = """
reachability-profiles:
  strict:
    tcp:
      high: {acceptable-error-threshold: 50}
services:
  web:
    address: [127.0.0.1/32]
    service-routes:
      r1:
        next-hop: {node: edge-1, interface: lo}
        reachability-detection: {detection-window: 5, reachability-profile: strict}
"""


def lane(source: str, error_pct: float, mean_ms: float, destination: str = "") -> LaneStats:
    return LaneStats(
        protocol="tcp",
        traffic_class="high",
        source=source,  # type: ignore[arg-type]
        destination=destination,
        count=20,
        errors=int(error_pct / 5),
        error_pct=error_pct,
        outcomes={"ok": 20 - int(error_pct / 5)},
        latency_mean_ms=mean_ms,
        latency_max_ms=mean_ms * 3,
    )


def path_state() -> dict[str, Any]:
    engine = Engine(parse_config(CONFIG).config, lambda: 10_001.0)
    out = engine.on_window(
        WindowStats(
            service="web",
            route="r1",
            window_start=9_995,
            window_end=10_000,
            lanes=[
                lane("probe", 0, 2.0),
                lane("passive", 10, 40.0),
                lane("passive", 10, 40.0, "127.0.0.1"),
                lane("passive", 0, 20.0, "127.0.0.2"),
            ],
        )
    )
    [state] = out.paths
    return msgspec.to_builtins(state)  # type: ignore[no-any-return]


def test_rows_put_probe_and_passive_of_one_class_together() -> None:
    [row] = show.probe_vs_passive(path_state())
    assert (row["protocol"], row["traffic_class"]) == ("tcp", "high")
    assert row["probe"]["count"] == 20 and row["probe"]["error_pct"] == 0
    assert row["probe"]["latency_mean_ms"] == 2.0 and row["probe"]["state"] == "up"
    assert row["passive"]["error_pct"] == 10 and row["passive"]["latency_mean_ms"] == 40.0
    assert row["passive"]["destinations"] == 2 and row["passive"]["state"] == "up"


def test_table_shows_both_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    output = io.StringIO()
    monkeypatch.setattr(show, "console", Console(file=output, width=300, color_system=None))
    show.render_service_path(path_state())
    text = output.getvalue()
    assert "Probe vs Passive" in text
    assert "Sessions" in text and "TTE mean" in text and "Passive" in text
    side_by_side = text[text.index("Probe vs Passive") :]
    [line] = [row for row in side_by_side.splitlines() if "tcp" in row and "40.00" in row]
    assert "2.00" in line and "120.00" in line  # probe mean, passive TTE max on one row


async def test_json_from_the_real_api_carries_the_side_by_side_rows(
    bus: Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    state = path_state()
    paths = await bus.kv(subjects.KV_PATHS)
    await paths.put(subjects.path_key("web", "r1"), msgspec.json.encode(state))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    stop = asyncio.Event()
    api = asyncio.create_task(
        run_api(parse_config(CONFIG).config, bus, stop=stop, listen=f"127.0.0.1:{port}")
    )

    def served() -> bool:
        try:
            reply = httpx.get(f"{url}/api/v1/service-paths", params={"service": "web"}, timeout=1)
            return reply.status_code == 200 and any(p["route"] == "r1" for p in reply.json())
        except httpx.HTTPError:
            return False

    try:

        async def ready() -> bool:
            return await asyncio.to_thread(served)

        await wait_for(ready, 15, what="the API serving web/r1")
        capsys.readouterr()
        await asyncio.to_thread(
            show.show_service_path, service="web", route="r1", api=url, json=True
        )
    finally:
        stop.set()
        await asyncio.wait_for(api, 10)
    [printed] = json.loads(capsys.readouterr().out)
    [row] = printed["probe_vs_passive"]
    assert row["probe"]["count"] == 20 and row["passive"]["destinations"] == 2
    assert row["passive"]["error_pct"] == 10
