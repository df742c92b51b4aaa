"""The enforcer against a real nats-server: WindowStats in; PathState in KV, events,
alarms and route / heal commands out; a restart keeps the hold-down and does not
duplicate alarms; load-balancer request / reply; probe state from KV."""

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError

from enforcer.engine import Engine
from enforcer.service import clear_disabled_probe_states, run_enforcer
from pathwatch.runtime.bus import Bus, BusOptions
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.embedded import EmbeddedNats
from schemas import subjects
from schemas.codec import decode_message, encode
from schemas.config import PathwatchConfig
from schemas.wire import (
    Alarm,
    HealCommand,
    LaneStats,
    LbSelectReply,
    LbSelectRequest,
    PathEvent,
    PathState,
    ProbeState,
    RouteCommand,
    WindowStats,
)
from tests.conftest import wait_for

T = TypeVar("T")


def make_config(service: str, node: str, hold_down: float = 2) -> PathwatchConfig:
    text = f"""
enforcer: {{lease-ttl: 1}}
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
        reachability-detection:
          detection-window: 1
          hold-down: {hold_down}
          reachability-profile: p
      r2:
        next-hop: {{node: {node}, interface: lo}}
        cost: 20
        reachability-detection:
          {{detection-window: 1, hold-down: {hold_down}, reachability-profile: p}}
"""
    return parse_config(text).config


def tcp_window(service: str, route: str, start: float, error_pct: float) -> WindowStats:
    ok = 10 - round(error_pct / 10)
    lane = LaneStats(
        protocol="tcp",
        traffic_class="high",
        count=10,
        errors=10 - ok,
        error_pct=error_pct,
        outcomes={"ok": ok, "refused": 10 - ok},
        latency_max_ms=2,
        latency_mean_ms=1,
    )
    return WindowStats(
        service=service, route=route, window_start=start, window_end=start + 1, lanes=[lane]
    )


class Collector:
    """Every message on a JetStream subject filter, decoded, in order."""

    def __init__(self, kind: type[Any]) -> None:
        self.kind = kind
        self.items: list[Any] = []
        self.msg_ids: list[str] = []

    async def on_msg(self, msg: Msg) -> None:
        self.items.append(decode_message(msg.data, self.kind))
        self.msg_ids.append((msg.headers or {}).get("Nats-Msg-Id", ""))

    def matching(self, predicate: Callable[[Any], bool]) -> list[Any]:
        return [item for item in self.items if predicate(item)]


async def collect(bus: Bus, subject: str, kind: type[Any]) -> Collector:
    collector = Collector(kind)
    await bus.js.subscribe(subject, ordered_consumer=True, cb=collector.on_msg)
    return collector


async def path_state(bus: Bus, service: str, route: str) -> PathState | None:
    kv = await bus.kv(subjects.KV_PATHS)
    try:
        entry = await kv.get(subjects.path_key(service, route))
    except Exception:
        return None
    return decode_message(entry.value or b"", PathState)


class Running:
    def __init__(self, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
        self.stop = stop
        self.task = task

    async def halt(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, timeout=10)


async def start(config: PathwatchConfig, bus: Bus, instance: str, store: Path) -> Running:
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_enforcer(config, bus, stop=stop, instance=instance, store_path=store)
    )
    leases = await bus.kv(subjects.KV_LEASES)

    async def holds() -> bool:
        try:
            entry = await leases.get("enforcer")
        except Exception:
            return False
        record = msgspec.json.decode(entry.value or b"{}")
        return bool(record.get("holder") == instance and record.get("expires", 0) > time.time())

    await wait_for(holds, 10, what=f"{instance} to hold the lease")
    return Running(stop, task)


@pytest.fixture
def names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"svc-{suffix}", f"node-{suffix}"


async def test_window_to_state_event_alarm_commands_and_restart(
    bus: Bus, names: tuple[str, str], tmp_path: Path
) -> None:
    service, node = names
    config = make_config(service, node)
    store = tmp_path / "pathwatch.db"
    alarms = await collect(bus, f"pw.alarm.{service}.>", Alarm)
    events = await collect(bus, f"pw.event.{service}.>", PathEvent)
    routes = await collect(bus, subjects.cmd_route(node), RouteCommand)
    heals = await collect(bus, f"pw.cmd.heal.{service}.>", HealCommand)
    running = await start(config, bus, "solo", store)
    try:
        t0 = float(int(time.time()))
        for route in ("r1", "r2"):
            await bus.nc.publish(
                subjects.stats(service, route), encode(tcp_window(service, route, t0 - 1, 0))
            )

        async def state_is(route: str, wanted: str) -> bool:
            state = await path_state(bus, service, route)
            return state is not None and state.state == wanted

        await wait_for(lambda: state_is("r1", "up"), 5, what="r1 up")
        await bus.nc.publish(
            subjects.stats(service, "r1"), encode(tcp_window(service, "r1", t0, 62))
        )
        await wait_for(lambda: state_is("r1", "down"), 5, what="r1 down")
        down = await path_state(bus, service, "r1")
        assert down is not None and not down.in_service and not down.best_effort
        assert down.reason == "tcp/high error 62 % > 50 %"
        assert down.hold_down_until == t0 + 1 + 2
        await wait_for(lambda: len(alarms.items) == 1, 5, what="alarm raised")
        assert alarms.items[0].status == "raised" and alarms.items[0].reason == down.reason
        await wait_for(lambda: len(heals.items) == 1, 5, what="heal command")
        await wait_for(
            lambda: any(c.action == "withdraw" for c in routes.items), 5, what="withdraw"
        )
        withdraw = routes.items[-1]
        assert withdraw.prefixes == ["127.0.0.1/32"] and withdraw.interface == "lo"
        assert withdraw.cost == 10
        await wait_for(
            lambda: any(e.kind == "path-down" for e in events.items), 5, what="path-down event"
        )
        # load-balancer selection avoids the withdrawn route
        reply_msg = await bus.nc.request(
            subjects.lb_select(service), encode(LbSelectRequest(service=service)), timeout=2
        )
        reply = decode_message(reply_msg.data, LbSelectReply)
        assert reply.route == "r2"

        # restart: the hold-down and the alarm survive, nothing is raised twice
        await running.halt()
        running = await start(config, bus, "solo", store)
        restored = await path_state(bus, service, "r1")
        assert restored is not None
        assert restored.hold_down_until == down.hold_down_until
        assert restored.hold_down_multiplier == 1
        await wait_for(lambda: state_is("r1", "probation"), 6, what="probation after hold-down")
        await wait_for(lambda: any(c.action == "restore" for c in routes.items), 5, what="restore")
        # the first window that starts after probation began is judged
        since = (await path_state(bus, service, "r1")).since  # type: ignore[union-attr]
        await bus.nc.publish(
            subjects.stats(service, "r1"), encode(tcp_window(service, "r1", since, 0))
        )
        await wait_for(lambda: state_is("r1", "up"), 5, what="r1 up again")
        await wait_for(lambda: len(alarms.items) == 2, 5, what="alarm cleared")
        raised, cleared = alarms.items
        assert cleared.status == "cleared" and cleared.id == raised.id
        kinds = [e.kind for e in events.items if e.route == "r1"]
        assert kinds[:4] == ["path-up", "path-down", "probation", "path-up"]
        assert len(set(alarms.msg_ids)) == len(alarms.msg_ids) == 2
    finally:
        await running.halt()


async def test_probe_state_in_kv_takes_routes_down(
    bus: Bus, names: tuple[str, str], tmp_path: Path
) -> None:
    service, node = names
    config = make_config(service, node, hold_down=30)
    running = await start(config, bus, "solo", tmp_path / "db")
    try:
        probes = await bus.kv(subjects.KV_PROBES)
        state = ProbeState(
            probe="bgp",
            state="down",
            node=node,
            interface="lo",
            reason="session idle",
            set_at=time.time(),
        )
        await probes.put(f"bgp.if.{node}.lo", encode(state))

        async def both_down() -> bool:
            states = [await path_state(bus, service, r) for r in ("r1", "r2")]
            return all(s is not None and s.state == "down" for s in states)

        await wait_for(both_down, 5, what="both routes down by probe state")
        r1 = await path_state(bus, service, "r1")
        r2 = await path_state(bus, service, "r2")
        assert r1 is not None and r2 is not None
        assert r1.reason == "probe bgp reported down: session idle"
        # every route is down: the best one (equal quality, lower cost) stays as best-effort
        assert r1.best_effort and r1.in_service
        assert not r2.in_service
    finally:
        await running.halt()


async def test_malformed_input_is_counted_and_dropped(
    bus: Bus, names: tuple[str, str], tmp_path: Path
) -> None:
    service, node = names
    config = make_config(service, node)
    running = await start(config, bus, "solo", tmp_path / "db")
    try:
        await bus.nc.publish(subjects.stats(service, "r1"), b"{not json")
        await bus.nc.publish(subjects.stats(service, "r1"), b'{"v": 99}')
        t0 = float(int(time.time()))
        await bus.nc.publish(
            subjects.stats(service, "r1"), encode(tcp_window(service, "r1", t0, 0))
        )

        async def up() -> bool:
            state = await path_state(bus, service, "r1")
            return state is not None and state.state == "up"

        await wait_for(up, 5, what="r1 up after malformed messages")
    finally:
        await running.halt()


async def test_takeover_deletes_live_probe_states_of_disabled_routes_only(bus: Bus) -> None:
    service = f"s{uuid.uuid4().hex[:8]}"
    config = parse_config(
        f"""
services:
  {service}:
    address: [127.0.0.1/32]
    service-routes:
      judged: {{next-hop: {{node: n1}}}}
      quiet: {{next-hop: {{node: n1}}, reachability-detection: {{probe-type: disabled}}}}
""",
        "test.yaml",
    ).config
    probes = await bus.kv(subjects.KV_PROBES)
    stream = f"KV_{subjects.KV_PROBES}"
    live, gone, kept = (
        f"{name}.{service}.{route}"
        for name, route in (("p1", "quiet"), ("p2", "quiet"), ("p1", "judged"))
    )
    for key in (live, gone, kept):
        await probes.put(key, b"{}")
    await probes.delete(gone)
    gone_seq = (await bus.js.get_last_msg(stream, f"$KV.{subjects.KV_PROBES}.{gone}")).seq
    await clear_disabled_probe_states(Engine(config, time.time), bus, probes)
    with pytest.raises(KeyNotFoundError):  # nats-py reports a deleted key as not found
        await probes.get(live)
    assert (await probes.get(kept)).value == b"{}"
    # the state deleted before gets no second delete marker
    assert (await bus.js.get_last_msg(stream, f"$KV.{subjects.KV_PROBES}.{gone}")).seq == gone_seq


async def test_the_enforcer_stops_at_once_when_nats_is_gone(
    tmp_path: Path, names: tuple[str, str]
) -> None:
    service, node = names
    config = make_config(service, node)
    server = EmbeddedNats(store_dir=tmp_path / "nats").start()
    bus = await Bus.connect(BusOptions.from_url(server.url, name="enforcer-stop-test"))
    try:
        await bus.ensure()
        running = await start(config, bus, "stopper", tmp_path / "enforcer.db")
        server.stop()
        await wait_for(lambda: not bus.nc.is_connected, 10, what="the client to notice")
        # the ticker renews the lease every TTL / 3: let its next renewal start
        # against the dead server (a KV request that waits out NATS's 5 s timeout)
        await asyncio.sleep(config.enforcer.lease_ttl / 3 + 0.2)
        running.stop.set()
        await asyncio.wait_for(running.task, timeout=3)
        assert running.task.exception() is None
    finally:
        await bus.close()
        server.stop()
