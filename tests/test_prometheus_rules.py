"""The deploy Prometheus files pass promtool: config and rules check, rule unit tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PROMTOOL = shutil.which("promtool")
DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
pytestmark = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is absent (Debian package `prometheus`, installed by scripts/test as root)",
)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False, cwd=DEPLOY
    )


def test_rules_are_valid_and_cover_pathwatch_health() -> None:
    result = _promtool("check", "rules", "rules/pathwatch.rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    text = (DEPLOY / "rules" / "pathwatch.rules.yml").read_text(encoding="utf-8")
    for alert in (
        "PathwatchAgentLost",
        "PathwatchIngestMalformed",
        "PathwatchEnforcerWithoutLease",
        "PathwatchPathDown",
    ):
        assert f"alert: {alert}" in text


def test_rule_unit_tests_pass() -> None:
    result = _promtool("test", "rules", "tests/pathwatch.rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_scrape_config_is_valid() -> None:
    result = _promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
