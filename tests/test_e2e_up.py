"""End to end, as a user runs it: every part in one process over a real nats-server.

A TCP listener on loopback is the service. Closing it must take the route down
with a raised alarm within one window plus slack; after hold-down the route
returns through probation to up, and the alarm is cleared.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import msgspec

from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.embedded import free_port
from pathwatch.up import run_all
from schemas import Alarm, PathEvent, PathState, subjects
from tests.conftest import wait_for
from tests.webhook_sink import WebhookSink

WINDOW_S = 1.0
HOLD_DOWN_S = 3.0


#: Unique per test run: the session's nats-server is shared with other tests.
SERVICE = f"e2e-{uuid.uuid4().hex[:8]}"


def e2e_config(nats_url: str, tmp_path: Path, service_port: int, webhook_url: str = "") -> str:
    hook = f"{{kind: webhook, url: '{webhook_url}', secret: s, services: [{SERVICE}]}}"
    notifiers = f"notifiers: {{hook: {hook}}}" if webhook_url else ""
    return f"""{notifiers}
nats: {{url: "{nats_url}"}}
api: {{listen: "127.0.0.1:{free_port()}"}}
metrics: {{listen: "127.0.0.1:{free_port()}"}}
store: {{path: "{tmp_path / "pw.db"}"}}
reachability-profiles:
  strict:
    tcp:
      best-effort: {{acceptable-error-threshold: 25}}
tcp-probe-profiles:
  svc:
    probe-interval: 0.1
    number-of-attempts: 1
    probe-duration: 0.05
    probe-address: [127.0.0.1]
    port: {service_port}
services:
  {SERVICE}:
    address: [127.0.0.1/32]
    service-policy: {{best-effort: false}}
    service-routes:
      r1:
        next-hop: {{node: local, interface: lo}}
        reachability-detection:
          detection-window: {WINDOW_S}
          hold-down: {HOLD_DOWN_S}
          consecutive-failures: 0
          reachability-profile: strict
          probes: [{{name: svc, tcp-probe-profile: svc}}]
"""


class Listener:
    """A TCP service on loopback that can be closed and reopened on the same port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: asyncio.Server | None = None

    async def open(self) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", self.port, reuse_address=True)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


async def path_state(bus: Bus) -> PathState | None:
    kv = await bus.kv(subjects.KV_PATHS)
    try:
        entry = await kv.get(subjects.path_key(SERVICE, "r1"))
    except Exception:
        return None
    if entry.value is None:
        return None
    return msgspec.json.decode(entry.value, type=PathState)


async def stream_messages(bus: Bus, subject: str, kind: type[msgspec.Struct]) -> list[object]:
    """Every message on `subject` in its stream, oldest first (ephemeral ordered consumer)."""
    messages: list[object] = []
    sub = await bus.js.subscribe(subject, ordered_consumer=True, deliver_policy="all")
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.3)
            except Exception:
                break
            messages.append(msgspec.json.decode(msg.data, type=kind))
    finally:
        await sub.unsubscribe()
    return messages


async def test_route_goes_down_and_heals_through_probation(
    bus: Bus, nats_url: str, tmp_path: Path, listener: Listener
) -> None:
    """Also: the notifier in `up` pushes the raise and the clear to a webhook, and its
    counters are on the shared /metrics."""
    sink = WebhookSink().start()
    text = e2e_config(nats_url, tmp_path, listener.port, webhook_url=sink.url)
    loaded = parse_config(text, "e2e.yaml")
    stop = asyncio.Event()
    runner = asyncio.create_task(run_all(loaded, stop))
    try:

        async def state_is(name: str) -> bool:
            if runner.done():
                runner.result()
            current = await path_state(bus)
            return current is not None and current.state == name

        await wait_for(lambda: state_is("up"), 20, what="route up")

        await listener.close()
        closed_at = time.monotonic()
        waited = await wait_for(lambda: state_is("down"), WINDOW_S * 2 + 2.5, what="route down")
        down = await path_state(bus)
        assert down is not None and not down.in_service and not down.best_effort
        # the reason names the failing test with its numbers (a refused TCP probe)
        assert re.search(r"tcp/best-effort error \d+ % > 25 %", down.reason), down.reason
        assert down.hold_down_until is not None
        alarms = await stream_messages(bus, subjects.alarm(SERVICE, "r1"), Alarm)
        raised = [a for a in alarms if isinstance(a, Alarm) and a.status == "raised"]
        assert raised, "no alarm raised when the route went down"
        print(f"down {waited:.2f} s after the listener closed ({time.monotonic() - closed_at:.2f})")

        await listener.open()
        await wait_for(lambda: state_is("probation"), HOLD_DOWN_S + 3, what="probation")
        await wait_for(lambda: state_is("up"), WINDOW_S * 3 + 2, what="up after probation")
        alarms = await stream_messages(bus, subjects.alarm(SERVICE, "r1"), Alarm)
        cleared = [a for a in alarms if isinstance(a, Alarm) and a.status == "cleared"]
        assert {a.id for a in cleared} >= {a.id for a in raised}, "alarm not cleared"
        events = await stream_messages(bus, subjects.event(SERVICE, "r1"), PathEvent)
        kinds = [e.kind for e in events if isinstance(e, PathEvent)]
        assert kinds.index("path-down") < kinds.index("probation") < len(kinds) - 1
        assert kinds[-1] == "path-up"

        wanted = {f"{a.id}:{status}" for a in raised for status in ("raised", "cleared")}
        await wait_for(lambda: wanted <= set(sink.deliveries()), 10, what="the webhook's alarms")
        metrics = f"http://{loaded.config.metrics.listen}/metrics"
        text = (await asyncio.to_thread(httpx.get, metrics, timeout=2)).text
        assert 'pathwatch_notifier_sent_total{kind="webhook",notifier="hook"}' in text
    finally:
        stop.set()
        await asyncio.wait_for(runner, timeout=5)
        sink.stop()


def test_pathwatch_up_cli_serves_paths_and_stops_cleanly(tmp_path: Path) -> None:
    """`pathwatch up` on a copy of the default config, as the README says to run it."""
    api_port, metrics_port = free_port(), free_port()
    default = subprocess.run(
        [sys.executable, "-m", "pathwatch", "config", "show"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    config = tmp_path / "pathwatch.yaml"
    config.write_text(
        default.replace("127.0.0.1:8640", f"127.0.0.1:{api_port}")
        .replace("port: 8640", f"port: {api_port}")
        .replace("127.0.0.1:9640", f"127.0.0.1:{metrics_port}")
    )
    log = (tmp_path / "up.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "pathwatch", "up", "-c", str(config)],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a shell job would be
    )
    try:
        deadline = time.monotonic() + 30
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "up.log").read_text()
            try:
                reply = httpx.get(f"http://127.0.0.1:{api_port}/api/v1/service-paths", timeout=1)
                states = {f"{p['service']}.{p['route']}": p["state"] for p in reply.json()}
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                states = {}
            if states and all(s in ("up", "down", "probation") for s in states.values()):
                break
            time.sleep(0.2)
        assert states.get("loopback.lo-primary") == "up", states
        show = subprocess.run(
            [
                sys.executable,
                "-m",
                "pathwatch",
                "show",
                "service-path",
                "--api",
                f"http://127.0.0.1:{api_port}",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert show.returncode == 0, show.stderr
        assert "lo-primary" in show.stdout and "lo-secondary" in show.stdout
        children = _children(process.pid)
        assert any("nats-server" in c for c in children), children
        started = time.monotonic()
        # Ctrl-C in a terminal signals the whole foreground process group.
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=5)
        assert time.monotonic() - started < 2.0
        assert all(not Path(f"/proc/{pid}").exists() for pid in _child_pids(children))
        output = (tmp_path / "up.log").read_text()
        assert "did not stop" not in output, output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


def _children(pid: int) -> list[str]:
    result = subprocess.run(
        ["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True
    )
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def _child_pids(children: list[str]) -> list[int]:
    return [int(line.split()[0]) for line in children]
