"""Two real enforcer processes: kill the active one, the standby takes over within two
lease TTLs, with no duplicate alarm and no lost transition."""

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import msgspec

from pathwatch.runtime.bus import Bus
from pathwatch.runtime.embedded import EmbeddedNats
from schemas import subjects
from schemas.codec import encode
from schemas.wire import Alarm, PathEvent
from tests.conftest import wait_for
from tests.test_enforcer_integration import collect, path_state, tcp_window

LEASE_TTL = 2.0


def write_config(path: Path, service: str, node: str) -> None:
    path.write_text(
        f"""
enforcer: {{lease-ttl: {LEASE_TTL:g}}}
reachability-profiles:
  p:
    tcp:
      high: {{acceptable-error-threshold: 50}}
services:
  {service}:
    address: [127.0.0.1/32]
    service-routes:
      r1:
        next-hop: {{node: {node}, interface: lo}}
        cost: 10
        reachability-detection: {{detection-window: 1, hold-down: 60, reachability-profile: p}}
      r2:
        next-hop: {{node: {node}, interface: lo}}
        cost: 20
        reachability-detection: {{detection-window: 1, hold-down: 60, reachability-profile: p}}
"""
    )


def spawn(config: Path, instance: str, url: str, store: Path) -> subprocess.Popen[bytes]:
    log = open(store.with_suffix(".log"), "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from pathwatch.cli import main; main()",
            "enforcer",
            "-c",
            str(config),
            "--instance",
            instance,
            "--nats",
            url,
            "--store",
            str(store),
        ],
        stdout=log,
        stderr=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )


async def lease_holder(bus: Bus) -> str | None:
    leases = await bus.kv(subjects.KV_LEASES)
    try:
        entry = await leases.get("enforcer")
    except Exception:
        return None
    record = msgspec.json.decode(entry.value or b"{}")
    if record.get("expires", 0) <= time.time():
        return None
    holder: str | None = record.get("holder")
    return holder


async def test_standby_takes_over_without_duplicates(
    bus: Bus, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    service, node = f"fo-{suffix}", f"n-{suffix}"
    config = tmp_path / "pathwatch.yaml"
    write_config(config, service, node)
    alarms = await collect(bus, f"pw.alarm.{service}.>", Alarm)
    events = await collect(bus, f"pw.event.{service}.>", PathEvent)
    first = f"a-{suffix}"
    second = f"b-{suffix}"
    active = spawn(config, first, nats_server.url, tmp_path / "a.db")
    standby: subprocess.Popen[bytes] | None = None
    try:
        await wait_for(lambda: lease_holder_is(bus, first), 20, what="first instance active")
        standby = spawn(config, second, nats_server.url, tmp_path / "b.db")
        t0 = float(int(time.time()))

        async def r1_state(wanted: str) -> bool:
            state = await path_state(bus, service, "r1")
            return state is not None and state.state == wanted

        await wait_for(
            lambda: f"enforcer {second}: ready" in (tmp_path / "b.log").read_text(),
            20,
            what="standby subscribed (its 'ready' log line)",
        )
        await bus.nc.publish(
            subjects.stats(service, "r1"), encode(tcp_window(service, "r1", t0, 80))
        )
        await wait_for(lambda: r1_state("down"), 10, what="r1 down (active)")
        await wait_for(lambda: len(alarms.items) == 1, 10, what="one alarm raised")

        active.send_signal(signal.SIGKILL)
        active.wait(timeout=10)
        killed_at = time.monotonic()
        # a transition while nobody is active: the standby judges it and must not lose it
        await bus.nc.publish(
            subjects.stats(service, "r2"), encode(tcp_window(service, "r2", t0 + 1, 90))
        )
        await wait_for(lambda: lease_holder_is(bus, second), 4 * LEASE_TTL, what="takeover")
        takeover = time.monotonic() - killed_at
        assert takeover <= 2 * LEASE_TTL, f"takeover took {takeover:.2f} s"
        await wait_for(
            lambda: any(a.route == "r2" for a in alarms.items), 10, what="r2 alarm after takeover"
        )
        await wait_for(
            lambda: any(e.route == "r2" and e.kind == "path-down" for e in events.items),
            10,
            what="r2 path-down event after takeover",
        )
        r2 = await path_state(bus, service, "r2")
        assert r2 is not None and r2.state == "down"
        # let the standby's flush settle, then count: nothing duplicated
        await asyncio.sleep(0.5)
        raised = [(a.id, a.status) for a in alarms.items]
        assert len(raised) == len(set(raised)) == 2, raised
        ids = [e.id for e in events.items]
        assert len(ids) == len(set(ids)), ids
        r1 = await path_state(bus, service, "r1")
        assert r1 is not None and r1.state == "down" and r1.hold_down_multiplier == 1
    finally:
        for process in (active, standby):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()


async def lease_holder_is(bus: Bus, instance: str) -> bool:
    return await lease_holder(bus) == instance
