"""The committed dashboards are exactly the generator's output, with the variables,
panels and thresholds the issue asks for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from pathwatch.grafana.dashboards import (
    Thresholds,
    build_dashboards,
    panel_queries,
    render,
    variable_queries,
)
from pathwatch.runtime.configfile import parse_config

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "grafana"


def _panels(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {panel["title"]: panel for panel in model["panels"] if panel["type"] != "row"}


def _steps(panel: dict[str, Any]) -> list[float | None]:
    return [step["value"] for step in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]


def test_committed_json_equals_generator_output() -> None:
    generated = build_dashboards()
    committed = sorted(path.name for path in DEPLOY.glob("*.json"))
    assert committed == sorted(generated)
    for name, model in generated.items():
        assert (DEPLOY / name).read_text(encoding="utf-8") == render(model), (
            f"{name} is stale: run `pathwatch grafana dashboards --out deploy/grafana`"
        )
    assert render(build_dashboards()["pathwatch-paths.json"]) == render(
        generated["pathwatch-paths.json"]
    )


def test_paths_dashboard_has_variables_timeline_and_profile_thresholds() -> None:
    model = build_dashboards()["pathwatch-paths.json"]
    assert set(variable_queries(model)) == {"service", "route", "class"}
    panels = _panels(model)
    assert panels["Path up"]["type"] == "state-timeline"
    assert panels["Meets SLA"]["type"] == "state-timeline"
    assert _steps(panels["Latency"]) == [None, 0.1, 0.25]
    assert _steps(panels["Loss"]) == [None, 0.1]
    assert _steps(panels["Errors"]) == [None, 0.25]
    assert _steps(panels["Time to establishment"]) == [None, 0.25, 0.5]
    assert panels["Latency"]["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] == {
        "mode": "dashed"
    }
    assert panels["Active alarms"]["type"] == "table"
    for title in ("Jitter", "MOS"):
        assert title in panels
    for _, expr in panel_queries(model):
        assert "pathwatch_" in expr
    ids = [panel["id"] for panel in model["panels"] if panel["type"] != "row"]
    assert len(ids) == len(set(ids))


def test_thresholds_follow_the_config() -> None:
    config = parse_config(
        """
reachability-profiles:
  default:
    tcp:
      high: {acceptable-error-threshold: 5, time-to-establishment: {max: 300, mean: 120}}
icmp-probe-profiles:
  lo: {probe-address: [127.0.0.1], sla-metrics: {max-loss: 2, latency: {max: 80, mean: 40},
       max-jitter: 15}}
""",
        "t.yaml",
    ).config
    model = build_dashboards(Thresholds.from_config(config))["pathwatch-paths.json"]
    panels = _panels(model)
    assert _steps(panels["Latency"]) == [None, 0.04, 0.08]
    assert _steps(panels["Loss"]) == [None, 0.02]
    assert _steps(panels["Errors"]) == [None, 0.05]
    assert _steps(panels["Time to establishment"]) == [None, 0.12, 0.3]
    assert _steps(panels["Jitter"]) == [None, 0.015]


def test_cli_regenerates_the_same_bytes(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pathwatch", "grafana", "dashboards", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for path in DEPLOY.glob("*.json"):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes()
        json.loads(path.read_text(encoding="utf-8"))
