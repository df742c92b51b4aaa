"""`pathwatch grafana provision` against a recording server that answers like the
documented Grafana HTTP API (no Grafana can be installed here): the requests match
the documented API and a second run updates in place without duplicates."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from pathwatch.grafana.dashboards import build_dashboards
from pathwatch.grafana.provision import (
    DATASOURCE_NAME,
    DATASOURCE_UID,
    FOLDER_UID,
    connect,
    provision,
)
from tests.grafana_recorder import GrafanaRecorder

TOKEN = "test-token"
PROMETHEUS = "http://127.0.0.1:9090"


@pytest.fixture
def grafana() -> Iterator[GrafanaRecorder]:
    recorder = GrafanaRecorder(TOKEN).start()
    try:
        yield recorder
    finally:
        recorder.stop()


def _calls(recorder: GrafanaRecorder, start: int = 0) -> list[tuple[str, str]]:
    return [(request.method, request.path) for request in recorder.requests[start:]]


def _run_cli(recorder: GrafanaRecorder) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pathwatch",
            "grafana",
            "provision",
            "--url",
            recorder.url,
            "--token",
            TOKEN,
            "--prometheus-url",
            PROMETHEUS,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_provision_twice_is_idempotent_and_follows_the_documented_api(
    grafana: GrafanaRecorder,
) -> None:
    dashboards = build_dashboards()
    first = _run_cli(grafana)
    assert first.returncode == 0, first.stderr
    assert "data source 'pathwatch Prometheus' created" in first.stdout
    assert "2 dashboards saved" in first.stdout
    assert _calls(grafana) == [
        ("GET", f"/api/datasources/uid/{DATASOURCE_UID}"),
        ("GET", f"/api/datasources/name/{DATASOURCE_NAME}"),
        ("POST", "/api/datasources"),
        ("GET", f"/api/folders/{FOLDER_UID}"),
        ("POST", "/api/folders"),
        ("POST", "/api/dashboards/db"),
        ("POST", "/api/dashboards/db"),
    ]
    assert all(request.authorization == f"Bearer {TOKEN}" for request in grafana.requests)
    created = grafana.requests[2].body
    assert created["type"] == "prometheus" and created["access"] == "proxy"
    assert created["url"] == PROMETHEUS and created["uid"] == DATASOURCE_UID
    assert grafana.requests[4].body == {"uid": FOLDER_UID, "title": "pathwatch"}
    saved = grafana.requests[5].body
    assert saved["overwrite"] is True and saved["folderUid"] == FOLDER_UID
    assert saved["dashboard"]["id"] is None
    assert {request.body["dashboard"]["uid"] for request in grafana.requests[5:7]} == {
        model["uid"] for model in dashboards.values()
    }

    mark = len(grafana.requests)
    second = _run_cli(grafana)
    assert second.returncode == 0, second.stderr
    assert "data source 'pathwatch Prometheus' updated" in second.stdout
    assert "folder 'pathwatch' exists" in second.stdout
    assert _calls(grafana, mark) == [
        ("GET", f"/api/datasources/uid/{DATASOURCE_UID}"),
        ("PUT", f"/api/datasources/uid/{DATASOURCE_UID}"),
        ("GET", f"/api/folders/{FOLDER_UID}"),
        ("POST", "/api/dashboards/db"),
        ("POST", "/api/dashboards/db"),
    ]
    state = grafana.state
    assert list(state.datasources) == [DATASOURCE_UID]
    assert state.datasources[DATASOURCE_UID]["version"] == 2
    assert list(state.folders) == [FOLDER_UID]
    assert sorted(state.dashboards) == sorted(model["uid"] for model in dashboards.values())
    assert all(entry["version"] == 2 for entry in state.dashboards.values())
    assert all(entry["folderUid"] == FOLDER_UID for entry in state.dashboards.values())


def test_existing_datasource_with_another_uid_is_updated_not_duplicated(
    grafana: GrafanaRecorder,
) -> None:
    api = connect(grafana.url, TOKEN)
    api.datasource.create_datasource(  # type: ignore[no-untyped-call]
        {"uid": "made-by-hand", "name": DATASOURCE_NAME, "type": "prometheus", "url": "x"}
    )
    steps: list[str] = []
    report = provision(api, build_dashboards(), PROMETHEUS, on_step=steps.append)
    assert report.datasource == "updated"
    assert list(grafana.state.datasources) == ["made-by-hand"]
    assert grafana.state.datasources["made-by-hand"]["url"] == PROMETHEUS
    assert len(steps) == 4


def test_bad_token_is_reported_with_the_status(grafana: GrafanaRecorder) -> None:
    grafana.token = "another-token"
    result = _run_cli(grafana)
    assert result.returncode == 1
    assert "401" in result.stderr
    assert grafana.state.datasources == {}
