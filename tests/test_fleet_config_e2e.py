"""One config for every host, changed without restarts, on real processes.

An agent, an aggregator, an enforcer and the API run as separate processes on the
session's nats-server, each started from a bootstrap file that holds only `nats:`, so
they take their config from KV `pathwatch-config`. The probe is TCP to two loopback
addresses of which one listens: half the attempts fail, so the error threshold decides.

* a pushed revision with a tighter threshold and a new route takes effect with no
  restart: the route is judged down, the new route gets windows and a state;
* a rollback (a new revision holding the first one's text) brings the route back and
  stops the new route's windows; `show fleet` shows every role current;
* a bad revision written straight into KV is refused by every role (a log line each,
  counted), which keeps running on its last good revision; `show fleet --check` flags
  them behind and exits 1.

`pathwatch up` and a router run from a config file: SIGHUP reads it again (every part
applies it), and a bad file on SIGHUP is refused with everything kept running.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import msgspec
import nats.aio.msg
import pytest

from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.configstore import ConfigStore, push_checked, record_for
from pathwatch.runtime.embedded import EmbeddedNats, free_port
from schemas import subjects
from schemas.codec import encode
from schemas.wire import PathState
from tests.conftest import wait_for
from tests.processes import Process
from tests.test_e2e_up import Listener

pytestmark = pytest.mark.slow

SERVICE = f"fleet-{uuid.uuid4().hex[:6]}"
NODE = f"node-{uuid.uuid4().hex[:6]}"
ROUTE = """
      {route}:
        next-hop: {{node: {node}, interface: lo}}
        reachability-detection:
          detection-window: 2s
          hold-down: 1s
          consecutive-failures: 0
          reachability-profile: rp
          probes: [{{name: half, tcp-probe-profile: half}}]"""
CONFIG = """\
api: {{listen: "127.0.0.1:{api}"}}
reachability-profiles:
  rp:
    tcp:
      high: {{acceptable-error-threshold: {threshold}, time-to-establishment: {{enabled: false}}}}
tcp-probe-profiles:
  half:
    probe-interval: 0.4s
    number-of-attempts: 1
    probe-duration: 0.3s
    probe-address: [127.0.0.1, 127.0.0.2]
    port: {port}
    traffic-classes: [high]
services:
  {service}:
    address: [127.0.0.1/32]
    service-policy: {{best-effort: false}}
    service-routes:{routes}
"""


def config_text(api: int, port: int, threshold: int, routes: tuple[str, ...]) -> str:
    return CONFIG.format(
        api=api,
        port=port,
        threshold=threshold,
        service=SERVICE,
        routes="".join(ROUTE.format(route=route, node=NODE) for route in routes),
    )


class Fleet:
    """The roles' processes, what they publish, and the pushes."""

    def __init__(self, bus: Bus, store: ConfigStore, name: str, api: int) -> None:
        self.bus = bus
        self.store = store
        self.name = name
        self.api = api
        self.processes: list[Process] = []
        self.windows: list[dict[str, float | str]] = []

    async def on_window(self, msg: nats.aio.msg.Msg) -> None:
        self.windows.append(msgspec.json.decode(msg.data))

    def windows_of(self, route: str, after: float = 0.0) -> int:
        return sum(w["route"] == route and float(w["window_end"]) > after for w in self.windows)

    async def push(self, text: str) -> int:
        pushed = await push_checked(
            self.store, parse_config(text, "fleet.yaml"), text, name=self.name
        )
        return pushed.revision

    async def state(self, route: str) -> PathState | None:
        kv = await self.bus.kv(subjects.KV_PATHS)
        try:
            entry = await kv.get(subjects.path_key(SERVICE, route))
        except Exception:
            return None
        return msgspec.json.decode(entry.value or b"", type=PathState)

    async def in_service(self, route: str, wanted: bool, after: float) -> bool:
        self.check_alive()
        state = await self.state(route)
        return state is not None and state.updated > after and state.in_service is wanted

    def running(self, revision: int) -> bool:
        """Every role logged that it runs `revision`."""
        self.check_alive()
        line = f"now running config revision {revision} "
        return all(line in process.log() for process in self.processes)

    def check_alive(self) -> None:
        for process in self.processes:
            assert process.running(), f"{process.name} ended:\n{process.log()[-3000:]}"

    def show_fleet(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "pathwatch",
                "show",
                "fleet",
                "--api",
                f"http://127.0.0.1:{self.api}",
                "--config-name",
                self.name,
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )


async def test_a_pushed_revision_takes_effect_everywhere_without_a_restart(
    bus: Bus, nats_server: EmbeddedNats, tmp_path: Path, listener: Listener
) -> None:
    name = f"fleet-{uuid.uuid4().hex[:8]}"
    api = free_port()
    store = await ConfigStore.open(bus, create=True)
    fleet = Fleet(bus, store, name, api)
    lenient = config_text(api, listener.port, 75, ("r1",))
    first = await fleet.push(lenient)
    bootstrap = tmp_path / "bootstrap.yaml"
    bootstrap.write_text(f'nats: {{url: "{nats_server.url}"}}\n')
    kv = ("-c", str(bootstrap), "--config-name", name)
    roles = {
        "agent": ["agent", *kv, "--node", NODE],
        "aggregator": ["aggregator", *kv, "--store", "", "--metrics", ""],
        "enforcer": ["enforcer", *kv, "--instance", f"e-{name}", "--store", str(tmp_path / "e.db")],
        "api": ["api", *kv],
    }
    #: what each logs once it runs its first revision
    started = f"starting from revision {first} "
    await bus.nc.subscribe(f"{subjects.STATS_PREFIX}.{SERVICE}.*", cb=fleet.on_window)
    fleet.processes = [Process.start(role, args, tmp_path) for role, args in roles.items()]
    try:
        for process in fleet.processes:
            await process.wait_log(started)
        await wait_for(lambda: fleet.in_service("r1", True, 0), 60, what="r1 in service")

        # a tighter threshold and a new route, pushed while everything runs
        pushed_at = time.time()
        second = await fleet.push(config_text(api, listener.port, 25, ("r1", "r2")))
        await wait_for(lambda: fleet.running(second), 30, what=f"every role on {second}")
        await wait_for(lambda: fleet.in_service("r1", False, pushed_at), 30, what="r1 judged down")
        state = await fleet.state("r1")
        assert state is not None and "error" in state.reason, state
        await wait_for(lambda: fleet.windows_of("r2") >= 1, 30, what="windows of the new r2")
        await wait_for(lambda: fleet.state("r2"), 30, what="a state of the new r2")

        # a rollback is a new revision with the first text: r1 back, r2 gone
        old = await store.at(name, first)
        rolled = await push_checked(
            store, old.load(), old.record.text, name=name, rollback_of=first
        )
        await wait_for(lambda: fleet.running(rolled.revision), 30, what="the rollback")
        rolled_at = time.time()
        await wait_for(lambda: fleet.in_service("r1", True, rolled_at), 30, what="r1 back")
        await wait_for(lambda: fleet.windows_of("r1", rolled_at + 2) >= 1, 20, what="r1 windows")
        assert fleet.windows_of("r2", rolled_at) == 0, "r2 has windows after it was removed"
        await wait_for(lambda: _fleet_current(fleet, rolled.revision), 30, what="show fleet")

        # a bad revision straight into KV: refused by every role, the last good one kept
        bad = lenient.replace("acceptable-error-threshold: 75", "acceptable-error-threshold: 500")
        digest = hashlib.sha256(bad.encode()).hexdigest()[:16]
        record = msgspec.structs.replace(
            record_for(parse_config(lenient, "fleet.yaml"), bad, name=name), digest=digest
        )
        injected_at = time.time()
        await store.kv.put(name, encode(record))
        await wait_for(
            lambda: all("config refused" in process.log() for process in fleet.processes),
            20,
            what="every role to refuse the bad revision",
        )
        await wait_for(lambda: fleet.windows_of("r1", injected_at + 2) >= 1, 20, what="windows")
        await wait_for(lambda: fleet.in_service("r1", True, injected_at), 10, what="r1 judged")
        await wait_for(lambda: _fleet_behind(fleet), 30, what="show fleet: every role behind")
        check = fleet.show_fleet("--check")
        assert check.returncode == 1, check.stdout + check.stderr
        assert "behind" in check.stdout and "refused 1" in check.stdout, check.stdout
        fleet.check_alive()
    finally:
        for process in fleet.processes:
            process.popen.send_signal(signal.SIGTERM)
        for process in fleet.processes:
            if await process.exit_status(10) != 0:
                pytest.fail(f"{process.name} did not stop cleanly:\n{process.log()[-2000:]}")


def _members(fleet: Fleet) -> dict[str, dict[str, object]]:
    """The members `show fleet --json` lists, by role (this test's four roles only run)."""
    shown = fleet.show_fleet("--json")
    assert shown.returncode == 0, shown.stderr
    members = {m["role"]: m for m in json.loads(shown.stdout)["members"]}
    assert len(members) == len(json.loads(shown.stdout)["members"]), shown.stdout
    return members


def _fleet_current(fleet: Fleet, revision: int) -> bool:
    members = _members(fleet)
    return set(members) == {"agent", "aggregator", "enforcer", "api"} and all(
        m["revision"] == revision and not m["behind"] and not m["refused"] for m in members.values()
    )


def _fleet_behind(fleet: Fleet) -> bool:
    return all(m["behind"] and m["refused"] == 1 for m in _members(fleet).values())


async def test_sighup_makes_up_and_a_role_read_their_file_again(
    nats_server: EmbeddedNats, tmp_path: Path, listener: Listener
) -> None:
    api = free_port()
    path = tmp_path / "pathwatch.yaml"
    header = (
        f'nats: {{url: "{nats_server.url}"}}\n'
        f'metrics: {{listen: "127.0.0.1:{free_port()}"}}\n'
        f'store: {{path: "{tmp_path / "pw.db"}"}}\n'
    )
    path.write_text(header + config_text(api, listener.port, 75, ("r1",)))
    up = Process.start("up", ["up", "-c", str(path), "--node", NODE], tmp_path)
    router = Process.start(
        "router", ["router", "-c", str(path), "--node", NODE, "--dry-run"], tmp_path
    )
    try:
        await up.wait_log("API on", "aggregator partition", "ready,")
        await router.wait_log("table")
        # a revision that adds notifiers to an `up` started without any: logged as
        # waiting for its next start (the rest is applied)
        hook = "notifiers: {hook: {kind: webhook, url: 'http://127.0.0.1:9/', secret: s}}\n"
        changed = header + hook + config_text(api, listener.port, 25, ("r1", "r2"))
        digest = parse_config(changed, str(path)).digest
        path.write_text(changed)
        for process in (up, router):
            process.popen.send_signal(signal.SIGHUP)
        line = f"now running config {path} (digest {digest})"
        parts = ("agent", "aggregator", "enforcer", "api")
        await up.wait_log(*(f"{part}: {line}" for part in parts), timeout=10)
        await up.wait_log("aggregator partition 0: 2 routes (1 new", timeout=5)
        await up.wait_log("notifier: notifiers changed; this role takes it at its next restart")
        await router.wait_log(f"router: {line}", f"router {NODE}: 2 service routes", timeout=10)

        path.write_text(header + "services: {web: {address: [not-an-address]}}\n")
        up.popen.send_signal(signal.SIGHUP)
        await up.wait_log("config refused, every role keeps its running config", timeout=10)
        assert "not-an-address" in up.log()
        for process in (up, router):
            assert process.running()
            process.popen.send_signal(signal.SIGTERM)
            assert await process.exit_status(10) == 0, process.log()[-2000:]
    finally:
        up.kill()
        router.kill()
