"""`pathwatch router` as a process: CAP_NET_ADMIN refusal and a run inside a test namespace."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pathwatch.runtime.bus import Bus
from pathwatch.runtime.embedded import EmbeddedNats
from schemas import subjects
from schemas.codec import encode
from schemas.wire import PathState
from tests.conftest import wait_for
from tests.netns import in_ns, namespaces, requires_root, veth

pytestmark = [pytest.mark.netns, requires_root]

requires_setpriv = pytest.mark.skipif(
    shutil.which("setpriv") is None, reason="needs setpriv (util-linux) to drop CAP_NET_ADMIN"
)


def write_config(path: Path, nats_url: str, service: str, node: str, if1: str, if2: str) -> Path:
    path.write_text(
        f"""
nats: {{url: "{nats_url}"}}
services:
  {service}:
    address: [192.0.2.0/24]
    service-routes:
      p1: {{next-hop: {{node: {node}, interface: {if1}, gateway-ip: 10.1.0.2}}, cost: 10}}
      p2: {{next-hop: {{node: {node}, interface: {if2}, gateway-ip: 10.2.0.2}}, cost: 10}}
"""
    )
    return path


def pathwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "pathwatch", *args]


@pytest.fixture
def bed() -> Iterator[tuple[str, str, str]]:
    with namespaces("h", "r1", "r2") as (host, r1, r2):
        if1, _ = veth(host, "10.1.0.1/24", r1, "10.1.0.2/24")
        if2, _ = veth(host, "10.2.0.1/24", r2, "10.2.0.2/24")
        yield host, if1, if2


@requires_setpriv
def test_refuses_without_cap_net_admin(tmp_path: Path, nats_url: str) -> None:
    config = write_config(tmp_path / "pw.yaml", nats_url, "web", "edge", "lo", "lo")
    result = subprocess.run(
        [
            "setpriv",
            "--bounding-set=-net_admin",
            "--inh-caps=-net_admin",
            *pathwatch("router", "-c", str(config), "--node", "edge"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "CAP_NET_ADMIN" in result.stderr


def test_refuses_an_embedded_nats(tmp_path: Path) -> None:
    config = write_config(tmp_path / "pw.yaml", "embedded", "web", "edge", "lo", "lo")
    result = subprocess.run(
        pathwatch("router", "-c", str(config), "--node", "edge", "--dry-run"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "nats.url" in result.stderr


async def test_cli_router_routes_inside_a_namespace(
    tmp_path: Path, bed: tuple[str, str, str], bus: Bus, nats_server: EmbeddedNats
) -> None:
    host, if1, if2 = bed
    tag = uuid.uuid4().hex[:8]
    service, node = f"svc{tag}", f"node{tag}"
    config = write_config(tmp_path / "pw.yaml", nats_server.url, service, node, if1, if2)
    kv = await bus.kv(subjects.KV_PATHS)
    await kv.put(
        subjects.path_key(service, "p2"),
        encode(PathState(service=service, route="p2", state="down", in_service=False)),
    )

    def gateways() -> list[str]:
        shown = json.loads(in_ns(host, "ip", "-j", "route", "show", "proto", "199").stdout)
        return [str(route.get("gateway")) for route in shown]

    process = await asyncio.create_subprocess_exec(
        *pathwatch("router", "-c", str(config), "--node", node, "--netns", host),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "250"},
    )
    try:
        await wait_for(lambda: gateways() == ["10.1.0.2"], 20, what="route via path 1")
        # the process keeps following KV (it once stopped itself after opening the netns)
        for route, in_service in (("p2", True), ("p1", False)):
            await kv.put(
                subjects.path_key(service, route),
                encode(PathState(service=service, route=route, in_service=in_service)),
            )
        await wait_for(lambda: gateways() == ["10.2.0.2"], 10, what="route via path 2")
        assert process.returncode is None
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr_bytes = await asyncio.wait_for(process.communicate(), 20)
    stderr = stderr_bytes.decode()
    assert process.returncode == 0, stderr
    assert "table 254, protocol 199" in stderr
