"""The hostile corpus (tests/hostile_corpus.py) against the real processes.

A real `pathwatch up` (agent, aggregator, enforcer, API) and a real
`pathwatch router --dry-run` run on the session's nats-server, the router taking
its config from KV `pathwatch-config` (pushed under the service's name, which
the corpus writes to as well). Every payload of
the corpus goes to every subject, request subject and KV bucket the product
consumes. Afterwards every role still works: a new window is published, the
route's state is written, a valid load-balancer request is answered, and a real
fault (the probed TCP listener closed) still takes the route down with an alarm
and a withdraw command. `/metrics` shows the drops of every role.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import msgspec
import nats.aio.msg
import nats.errors
import pytest

from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configfile import load_config
from pathwatch.runtime.configstore import ConfigStore, push_checked
from pathwatch.runtime.embedded import EmbeddedNats, free_port
from schemas import subjects
from schemas.wire import Alarm, LbSelectReply, LbSelectRequest, PathState, RouteCommand
from tests.conftest import wait_for
from tests.hostile_corpus import Input, consumed_inputs, payloads
from tests.hostile_up import stream_messages
from tests.test_e2e_up import Listener

pytestmark = pytest.mark.slow

T = TypeVar("T")

SERVICE = f"hostile-{uuid.uuid4().hex[:6]}"
NODE = f"edge-{uuid.uuid4().hex[:6]}"


def _config(nats_url: str, tmp_path: Path, api: int, metrics: int, service_port: int) -> str:
    return f"""
nats: {{url: "{nats_url}"}}
api: {{listen: "127.0.0.1:{api}"}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
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
        next-hop: {{node: {NODE}, interface: lo}}
        reachability-detection:
          detection-window: 1
          hold-down: 30
          consecutive-failures: 0
          reachability-profile: strict
          probes: [{{name: svc, tcp-probe-profile: svc}}]
"""


class Processes:
    """The product's processes of this test and their logs."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        log = (self.tmp_path / f"{name}.log").open("wb")
        self.running[name] = subprocess.Popen(
            [sys.executable, "-m", "pathwatch", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.tmp_path,
            env={**os.environ, "COLUMNS": "200"},
        )

    def check_alive(self) -> None:
        for name, process in self.running.items():
            assert process.poll() is None, f"{name} exited: {self.log(name)[-3000:]}"

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for process in self.running.values():
            process.terminate()
        for process in self.running.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = Processes(tmp_path)
    try:
        yield running
    finally:
        running.stop()


async def _path_state(bus: Bus) -> PathState | None:
    kv = await bus.kv(subjects.KV_PATHS)
    try:
        entry = await kv.get(subjects.path_key(SERVICE, "r1"))
        return msgspec.json.decode(entry.value or b"", type=PathState)
    except Exception:
        return None


async def _send(bus: Bus, target: Input, payload: bytes) -> str:
    """Send one payload; what happened to it on the way ("sent", "answered", ...)."""
    try:
        if target.kind == "core":
            await bus.nc.publish(target.target, payload)
        elif target.kind == "stream":
            await bus.js.publish(target.target, payload)
        elif target.kind == "kv":
            await (await bus.kv(target.target)).put(target.key, payload)
        else:
            await bus.nc.request(target.target, payload, timeout=2)
            return "answered"
    except (nats.errors.Error, TimeoutError) as exc:
        return f"refused: {type(exc).__name__}"
    return "sent"


def _metric_lines(text: str, name: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, _, value = line.rpartition(" ")
            found[labels[len(name) :]] = float(value)
    return found


async def test_every_input_survives_the_hostile_corpus(
    bus: Bus, nats_server: EmbeddedNats, tmp_path: Path, listener: Listener, processes: Processes
) -> None:
    api, metrics = free_port(), free_port()
    config = tmp_path / "pathwatch.yaml"
    config.write_text(_config(nats_server.url, tmp_path, api, metrics, listener.port))
    processes.start("up", "up", "-c", str(config))
    loaded = load_config(config)
    store = await ConfigStore.open(bus, create=True)
    await push_checked(store, loaded, config.read_text(), name=SERVICE)
    processes.start(
        "router",
        "router",
        "-c",
        str(config),
        "--config-from",
        "nats",
        "--config-name",
        SERVICE,
        "--node",
        NODE,
        "--dry-run",
    )

    async def state_is(name: str, after: float = 0.0) -> bool:
        processes.check_alive()
        state = await _path_state(bus)
        return state is not None and state.state == name and state.updated > after

    await wait_for(lambda: state_is("up"), 30, what="route up before the corpus")

    # --- the corpus, to every input -------------------------------------------
    outcomes: Counter[tuple[str, str]] = Counter()
    sent = 0
    for target in consumed_inputs(SERVICE, "r1", NODE, time.time()):
        for _label, payload in payloads(target.valid):
            outcomes[(target.name, await _send(bus, target, payload))] += 1
            sent += 1
    await bus.nc.flush()
    corpus_end = time.time()
    print(f"\ncorpus: {sent} payloads to {len({n for n, _ in outcomes})} inputs")
    for (name, outcome), count in sorted(outcomes.items()):
        print(f"  {name:14} {outcome:28} {count}")
    assert not [key for key in outcomes if key[1].startswith("refused") and key[0] == "lb-select"]

    # --- every role still works -------------------------------------------------
    windows: list[bytes] = []

    async def on_window(msg: nats.aio.msg.Msg) -> None:
        windows.append(msg.data)

    subscription = await bus.nc.subscribe(subjects.stats(SERVICE, "r1"), cb=on_window)

    async def new_window() -> bool:
        processes.check_alive()
        return any(msgspec.json.decode(w)["window_start"] > corpus_end for w in windows)

    await wait_for(new_window, 10, what="a window after the corpus")
    await subscription.unsubscribe()
    await wait_for(lambda: state_is("up", corpus_end), 10, what="state written after the corpus")

    request = msgspec.json.encode(LbSelectRequest(service=SERVICE))
    reply = msgspec.json.decode(
        (await bus.nc.request(subjects.lb_select(SERVICE), request, timeout=2)).data,
        type=LbSelectReply,
    )
    assert reply.route == "r1", reply
    async with httpx.AsyncClient(timeout=2) as client:
        assert (await client.get(f"http://127.0.0.1:{api}/healthz")).status_code == 200

    await listener.close()
    await wait_for(lambda: state_is("down", corpus_end), 10, what="route down after the corpus")
    alarms = await stream_messages(bus, subjects.alarm(SERVICE, "r1"), Alarm)
    assert any(a.status == "raised" and a.raised_at > corpus_end for a in alarms), alarms
    commands = await stream_messages(bus, subjects.cmd_route(NODE), RouteCommand)
    assert any(c.action == "withdraw" and c.ts > corpus_end for c in commands), commands

    # --- /metrics counted the drops of every role -------------------------------
    async def drops_shown() -> bool:
        processes.check_alive()
        text = await _scrape(metrics)
        roles = {
            re.search(r'role="([^"]+)"', key).group(1)  # type: ignore[union-attr]
            for key in _metric_lines(text, "pathwatch_dropped_messages_total")
        }
        return {"enforcer", "api", "aggregator", "router"} <= roles

    await wait_for(drops_shown, 15, what="drops of every role in /metrics")
    text = await _scrape(metrics)
    dropped = _metric_lines(text, "pathwatch_dropped_messages_total")
    ingest = _metric_lines(text, "pathwatch_ingest_malformed_total")
    print("drops in /metrics:")
    for labels, value in sorted({**dropped, **ingest}.items()):
        if value:
            print(f"  {labels} {value:g}")
    by_input = Counter[str]()
    for labels, value in dropped.items():
        match = re.search(r'input="([^"]*)"', labels)
        by_input[match.group(1) if match else ""] += int(value)
    needed_inputs = ("stats", "fast", "heartbeat", "lb-select", "probe-state", "kv-path", "status")
    for needed in (*needed_inputs, "config"):
        assert by_input[needed] > 0, (needed, by_input)
    assert by_input["route-command"] > 0 and by_input["alarm"] > 0, by_input
    assert sum(ingest.values()) > 0, ingest
    restarts = _metric_lines(text, "pathwatch_consumer_restarts_total")
    assert not any(restarts.values()), restarts
    processes.check_alive()


async def _scrape(port: int) -> str:
    async with httpx.AsyncClient(timeout=2) as client:
        return (await client.get(f"http://127.0.0.1:{port}/metrics")).text
