"""`pathwatch healer` as a process: its `--json` event log and `/metrics` (root).

The healer runs beside the session's nats-server while its liveness pings and host
route live in the test's client namespace (`--netns`), joined by a veth pair to a
server namespace holding the destination (addresses only inside those namespaces);
a heal command moves it from r1 to r2, and both the JSON lines and a scrape say so.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.msg import Msg
from prometheus_client.parser import text_string_to_metric_families

from pathwatch.runtime.bus import Bus
from pathwatch.runtime.embedded import EmbeddedNats, free_port
from pathwatch.testbed import bed_host
from schemas import subjects
from schemas.codec import decode_message, encode
from schemas.wire import HealCommand, RoleStatus
from tests.conftest import wait_for
from tests.netns import in_ns, namespaces, requires_root, veth

pytestmark = [pytest.mark.netns, requires_root]

CLIENT, SERVER, DESTINATION = bed_host(51, 1), bed_host(51, 2), bed_host(52, 20)


def write_config(path: Path, nats_url: str, service: str, interface: str = "lo") -> Path:
    next_hop = f"{{node: n1, interface: {interface}, gateway-ip: {SERVER}}}"
    path.write_text(
        f'nats: {{url: "{nats_url}"}}\n'
        "services:\n"
        f"  {service}:\n"
        f"    address: [{DESTINATION}/32]\n"
        "    service-routes:\n"
        f"      r1: {{next-hop: {next_hop}, cost: 10}}\n"
        f"      r2: {{next-hop: {next_hop}, cost: 20}}\n"
    )
    return path


def samples(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {
        frozenset(sample.labels.items()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


class Lines:
    """JSON lines read from a process's stdout as they come."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.events: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for line in stream:
            self.events.append(json.loads(line))

    def seen(self, event: str, route: str) -> bool:
        return any(e["event"] == event and e["route"] == route for e in self.events)


async def test_json_events_and_metrics_show_a_heal(
    tmp_path: Path, bus: Bus, nats_server: EmbeddedNats
) -> None:
    service = f"hcli{uuid.uuid4().hex[:6]}"
    port = free_port()
    log = tmp_path / "stderr.log"
    with namespaces("hc", "hs") as (ns, server), log.open("wb") as stderr:
        interface, _ = veth(ns, f"{CLIENT}/24", server, f"{SERVER}/24")
        in_ns(server, "ip", "addr", "add", f"{DESTINATION}/32", "dev", "lo")
        config = write_config(tmp_path / "pw.yaml", nats_server.url, service, interface)
        process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "pathwatch", "healer", "-c", str(config)],
            *["--service", service, "--route", "r1", "--source", CLIENT, "--netns", ns],
            *["--json", "--metrics-listen", f"127.0.0.1:{port}"],
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
        assert process.stdout is not None
        lines = Lines(process.stdout)
        statuses: list[RoleStatus] = []

        async def on_status(msg: Msg) -> None:
            statuses.append(decode_message(msg.data, RoleStatus))

        status_subscription = await bus.nc.subscribe(
            f"{subjects.STATUS_PREFIX}.healer.*", cb=on_status
        )
        try:
            await wait_for(lambda: lines.seen("liveness-pass", "r1"), 20, what="r1 proven")
            await bus.nc.publish(subjects.cmd_heal(service, "r1"), b"{not json")
            command = HealCommand(id="c1", service=service, route="r1", reason="t", ts=time.time())
            await bus.nc.publish(subjects.cmd_heal(service, "r1"), encode(command))
            await wait_for(lambda: lines.seen("liveness-pass", "r2"), 10, what="r2 proven")
            shown = in_ns(ns, "ip", "-j", "route", "show", "proto", "200").stdout
            assert [route["dst"] for route in json.loads(shown)] == [DESTINATION]
            async with httpx.AsyncClient() as client:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        finally:
            process.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            await asyncio.wait_for(process.wait(), 10)
            await lines.task
            # the status it publishes once more as it stops carries the drop
            await wait_for(
                lambda: any(s.dropped.get("heal-command:json") == 1 for s in statuses),
                5,
                what="the healer's drops in its role status",
            )
            await status_subscription.unsubscribe()
    assert process.returncode == 0, log.read_text()[-2000:]
    assert time.monotonic() - stopped < 5
    kinds = [(e["event"], e["route"]) for e in lines.events]
    assert kinds[0] == ("request", "r1")
    assert kinds.index(("heal-command", "r1")) < kinds.index(("reselect", "r2"))
    assert kinds.index(("reselect", "r2")) < kinds.index(("liveness-pass", "r2"))
    assert all(e["service"] == service and isinstance(e["ts"], float) for e in lines.events)
    reselect = next(e for e in lines.events if e["event"] == "reselect")
    assert reselect["previous"] == "r1"

    label = ("service", service)
    assert samples(text, "pathwatch_healer_reselects_total") == {frozenset({label}): 1.0}
    assert samples(text, "pathwatch_healer_heal_commands_total") == {frozenset({label}): 1.0}
    assert samples(text, "pathwatch_healer_route") == {
        frozenset({label, ("route", "r1")}): 0.0,
        frozenset({label, ("route", "r2")}): 1.0,
    }
    checks = samples(text, "pathwatch_healer_liveness_checks_total")
    assert checks[frozenset({label, ("result", "pass")})] >= 2
    assert samples(text, "pathwatch_healer_data_plane_up") == {frozenset({label}): 1.0}
    assert samples(text, "pathwatch_healer_malformed_messages_total") == {
        frozenset({label, ("reason", "heal-command-json")}): 1.0
    }


def test_a_bad_metrics_listen_address_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path / "pw.yaml", "nats://127.0.0.1:4222", "web")
    result = subprocess.run(
        [
            *[sys.executable, "-m", "pathwatch", "healer", "-c", str(config)],
            *["--service", "web", "--route", "r1", "--metrics-listen", "nowhere"],
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--metrics-listen" in result.stderr and "HOST:PORT" in result.stderr
