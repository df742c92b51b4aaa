"""Nothing recorded is lost: after a `kill -9` of the enforcer at the worst moment, the
SQLite store and the streams agree again once it restarts (`enforcer.reconcile`).

The worst moment is forced: a real `pathwatch enforcer` process runs with its store
locked by the test (an open write transaction), so when a route goes down it publishes
the first transition or alarm and then waits to record it; it is killed (SIGKILL) right
then, with the message in the stream and not in the store. Restarted, it records what
it lacks before anything else.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path

from pathwatch.runtime.bus import Bus
from pathwatch.runtime.embedded import EmbeddedNats
from schemas import subjects
from schemas.codec import decode_message, encode
from schemas.wire import Alarm, PathEvent, PathState
from tests.conftest import wait_for
from tests.processes import Process
from tests.test_enforcer_integration import tcp_window


def config_text(url: str, service: str, node: str) -> str:
    detection = "reachability-detection: {detection-window: 1, hold-down: 30}"
    return (
        f'nats: {{url: "{url}"}}\n'
        "enforcer: {lease-ttl: 1}\n"
        "reachability-profiles: {p: {tcp: {high: {acceptable-error-threshold: 50}}}}\n"
        f"services:\n  {service}:\n    address: [127.0.0.1/32]\n    service-routes:\n"
        f"      r1: {{next-hop: {{node: {node}, interface: lo}}, cost: 10, {detection}}}\n"
        f"      r2: {{next-hop: {{node: {node}, interface: lo}}, cost: 20, {detection}}}\n"
    ).replace("hold-down: 30}", "hold-down: 30, reachability-profile: p}")


async def published(bus: Bus, service: str) -> set[tuple[str, str]]:
    """(id, status or kind) of every alarm and transition of `service` in the streams."""
    found: set[tuple[str, str]] = set()
    for stream, subject in (
        (subjects.STREAM_ALARMS, f"{subjects.ALARM_PREFIX}.{service}.>"),
        (subjects.STREAM_EVENTS, f"{subjects.EVENT_PREFIX}.{service}.>"),
    ):
        reader = await bus.js.pull_subscribe(subject, stream=stream)
        try:
            while True:
                try:
                    messages = await reader.fetch(256, timeout=0.3)
                except TimeoutError:
                    break
                for message in messages:
                    if stream == subjects.STREAM_ALARMS:
                        alarm = decode_message(message.data, Alarm)
                        found.add((alarm.id, alarm.status))
                    else:
                        event = decode_message(message.data, PathEvent)
                        found.add((event.id, event.kind))
                    await message.ack()
        finally:
            await reader.unsubscribe()
    return found


def recorded(db: Path, service: str) -> set[tuple[str, str]]:
    with sqlite3.connect(db) as connection:
        alarms = connection.execute(
            "SELECT id, status FROM enforcer_alarms WHERE service = ?", (service,)
        ).fetchall()
        events = connection.execute(
            "SELECT id, kind FROM enforcer_transitions WHERE service = ?", (service,)
        ).fetchall()
    return {(row[0], row[1]) for row in [*alarms, *events]}


async def test_store_and_streams_agree_after_a_kill_between_publish_and_record(
    bus: Bus, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    service, node = f"rec-{suffix}", f"node-{suffix}"
    config = tmp_path / "pathwatch.yaml"
    config.write_text(config_text(nats_server.url, service, node))
    db = tmp_path / "enforcer.db"
    args = ["enforcer", "-c", str(config), "--instance", f"rec-{suffix}", "--store", str(db)]
    paths = await bus.kv(subjects.KV_PATHS)

    async def state_of(route: str) -> str:
        try:
            entry = await paths.get(subjects.path_key(service, route))
        except Exception:
            return ""
        return decode_message(entry.value or b"", PathState).state

    enforcer = Process.start("enforcer-1", args, tmp_path)
    lock: sqlite3.Connection | None = None
    try:
        await enforcer.wait_log(f"enforcer rec-{suffix}: active")
        t0 = float(int(time.time()))
        for route in ("r1", "r2"):
            await bus.nc.publish(
                subjects.stats(service, route), encode(tcp_window(service, route, t0 - 1, 0))
            )

        async def both_up_and_recorded() -> bool:
            if [await state_of("r1"), await state_of("r2")] != ["up", "up"]:
                return False
            return await published(bus, service) == recorded(db, service) != set()

        await wait_for(both_up_and_recorded, 10, what="both routes up, transitions recorded")
        before = await published(bus, service)

        async def first_publication() -> bool:
            return len(await published(bus, service)) > len(before)

        lock = sqlite3.connect(db, isolation_level=None, timeout=10)
        lock.execute("BEGIN IMMEDIATE")  # the enforcer can still read, not write
        await bus.nc.publish(
            subjects.stats(service, "r1"), encode(tcp_window(service, "r1", t0, 80))
        )
        await wait_for(first_publication, 10, what="the first publication of r1 going down")
        enforcer.kill()  # SIGKILL while it waits to record what it published
        lock.rollback()
        lock.close()
        lock = None
        gap = await published(bus, service) - recorded(db, service)
        assert gap, "the kill came after the record: not the worst moment"

        enforcer = Process.start("enforcer-2", args, tmp_path)
        await enforcer.wait_log(f"enforcer rec-{suffix}: ready")
        assert gap <= recorded(db, service)
        assert "store: recorded" in enforcer.log()
        # and nothing recorded that was not published
        assert recorded(db, service) <= await published(bus, service)
    finally:
        if lock is not None:
            lock.close()
        enforcer.kill()
