"""The REST API as a real process: fuzzed with schemathesis against its own OpenAPI
schema (no 5xx), bearer-token auth (401 / 403), and 404 / 422 with reasons."""

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from pathwatch.runtime.embedded import EmbeddedNats, free_port

TOKEN = "test-token-" + uuid.uuid4().hex
PROBE = "plugin-" + uuid.uuid4().hex[:8]


def _config(path: Path, port: int) -> None:
    path.write_text(
        f"""
api: {{listen: 127.0.0.1:{port}, token: {TOKEN}}}
services:
  web:
    address: [127.0.0.1/32]
    service-routes:
      r1:
        next-hop: {{node: edge-1, interface: lo}}
        reachability-detection: {{probes: [{{name: {PROBE}, plugin: {PROBE}}}]}}
      quiet:
        next-hop: {{node: edge-2, interface: lo}}
        reachability-detection: {{probe-type: disabled}}
"""
    )


@pytest.fixture(scope="module")
def api_url(nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    config = tmp_path_factory.mktemp("api") / "pathwatch.yaml"
    _config(config, port)
    log_path = config.with_suffix(".log")
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from pathwatch.cli import main; main()",
            "api",
            "-c",
            str(config),
            "--nats",
            nats_server.url,
        ],
        stdout=log,
        stderr=log,
        env={**os.environ, "COLUMNS": "200"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError(f"the API did not come up: {log_path.read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_no_server_errors(api_url: str) -> None:
    """Every operation of the served OpenAPI schema, fuzzed: never a 5xx."""
    schema = schemathesis.openapi.from_url(f"{api_url}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 8
    headers = {"Authorization": f"Bearer {TOKEN}"}
    client = httpx.Client(timeout=5)
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case: schemathesis.Case[Any]) -> None:
            # schemathesis's own requests transport trips over the installed urllib3,
            # so its serialised request is sent with httpx
            kwargs = case.as_transport_kwargs(base_url=api_url, headers=headers)
            response = client.request(
                kwargs["method"],
                kwargs["url"],
                params=kwargs.get("params"),
                headers=kwargs.get("headers"),
                json=kwargs.get("json"),
                content=kwargs.get("data"),
            )
            assert response.status_code < 500, (case.method, kwargs["url"], response.text)
            if response.status_code >= 400:
                assert response.json().get("detail"), response.text

        fuzz()


def test_auth_required(api_url: str) -> None:
    missing = httpx.get(f"{api_url}/api/v1/service-paths")
    assert missing.status_code == 401 and "bearer token is required" in missing.json()["detail"]
    wrong = httpx.get(f"{api_url}/api/v1/service-paths", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and "not valid" in wrong.json()["detail"]
    assert httpx.get(f"{api_url}/healthz").status_code == 200


def test_probe_state_round_trip_and_reasons(api_url: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    base = f"{api_url}/api/v1/probe-state"
    put = httpx.put(
        f"{base}/{PROBE}",
        json={"state": "down", "service": "web", "route": "r1", "reason": "idle", "ttl": 60},
        headers=headers,
    )
    assert put.status_code == 200, put.text
    assert put.json()["expires_at"] > put.json()["set_at"]
    got = httpx.get(f"{base}/{PROBE}", params={"service": "web", "route": "r1"}, headers=headers)
    assert got.status_code == 200 and got.json()[0]["state"] == "down"
    unknown = httpx.put(
        f"{base}/{PROBE}", json={"state": "down", "service": "web", "route": "zz"}, headers=headers
    )
    assert unknown.status_code == 404 and "unknown service route" in unknown.json()["detail"]
    undeclared = httpx.put(
        f"{base}/made-up", json={"state": "down", "service": "web", "route": "r1"}, headers=headers
    )
    assert undeclared.status_code == 404 and "not declared" in undeclared.json()["detail"]
    disabled = httpx.put(
        f"{base}/{PROBE}",
        json={"state": "down", "service": "web", "route": "quiet"},
        headers=headers,
    )
    assert disabled.status_code == 422 and "probe-type is disabled" in disabled.json()["detail"]
    bad = httpx.put(f"{base}/{PROBE}", json={"state": "sideways"}, headers=headers)
    assert bad.status_code == 422
    by_interface = httpx.put(
        f"{base}/{PROBE}",
        json={"state": "up", "node": "edge-1", "interface": "lo"},
        headers=headers,
    )
    assert by_interface.status_code == 200
    deleted = httpx.delete(f"{base}/{PROBE}", headers=headers)
    assert deleted.status_code == 200
    assert sorted(deleted.json()["deleted"]) == [f"{PROBE}.if.edge-1.lo", f"{PROBE}.web.r1"]
    gone = httpx.get(f"{base}/{PROBE}", params={"service": "web", "route": "r1"}, headers=headers)
    assert gone.status_code == 404
