"""Which liveness results count (agents.healer.attribution) and what ends the backoff.

The attribution rule is checked pure and on a `Healer` driven step by step with an
injected clock (a real NATS connection, nobody else on it: the control plane is
down, so reselects choose locally); the backoff's end on a running healer with a
scripted check and hook, a heal command and a KV state published for real.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from agents.healer.attribution import Attribution, Stamp
from agents.healer.decision import Action
from agents.healer.healer import Healer
from agents.healer.hooks import Reconnect
from agents.healer.liveness_loop import LivenessLoop
from agents.healer.settings import LivenessSettings
from agents.probe.datapath_check import Connection
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configfile import parse_config
from schemas import subjects
from schemas.codec import encode
from schemas.config import PathwatchConfig
from schemas.wire import HealCommand, PathState
from tests.conftest import wait_for

SOURCE1, SOURCE2 = "127.0.0.11", "127.0.0.12"


def make_config(service: str, backoff_base: float = 0.5) -> PathwatchConfig:
    return parse_config(
        f"""
healer: {{backoff-base: {backoff_base}, backoff-jitter: 0}}
services:
  {service}:
    address: [127.0.0.20/32]
    service-routes:
      r1: {{next-hop: {{node: n1, interface: lo, source-address: {SOURCE1}}}, cost: 10}}
      r2: {{next-hop: {{node: n1, interface: lo, source-address: {SOURCE2}}}, cost: 20}}
""",
        "test.yaml",
    ).config


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Hook:
    """A reconnect hook that records what it was asked and what a round would stamp."""

    def __init__(self) -> None:
        self.calls: list[Reconnect] = []
        self.stamps: list[Stamp] = []
        self.healer: Healer | None = None

    async def __call__(self, reconnect: Reconnect) -> None:
        self.calls.append(reconnect)
        if self.healer is not None:  # a liveness round starting while the hook runs
            self.stamps.append(self.healer.attribution.stamp())


async def never_alive(deadline: float, connection: Connection) -> bool:
    return False


def test_a_round_counts_only_while_its_connection_is_current() -> None:
    old, new = Connection(source=[SOURCE1]), Connection(source=[SOURCE2])
    attribution = Attribution("r1", old)
    before = attribution.stamp()
    assert attribution.counts(before)
    attribution.moving()
    during = attribution.stamp()
    assert not attribution.counts(before)
    assert during.connection is old  # a round begun now still checks the old connection...
    attribution.moved("r2", new)
    assert not attribution.counts(during)  # ...so its result never counts for the new one
    after = attribution.stamp()
    assert (after.route, after.connection) == ("r2", new) and attribution.counts(after)
    attribution.moving()
    attribution.stayed()  # a failed hook may have done part of its work
    assert not attribution.counts(after)
    assert attribution.stamp().route == "r2"


async def test_a_round_begun_during_a_heal_cannot_undo_it(bus: Bus) -> None:
    service = f"hattr{uuid.uuid4().hex[:6]}"
    clock, hook = Clock(), Hook()
    healer = Healer(
        make_config(service),
        bus,
        service=service,
        route="r1",
        hook=hook,
        check=never_alive,
        clock=clock,
        environ={},
    )
    hook.healer = healer
    in_flight = healer.attribution.stamp()  # a round on r1 when the path dies
    healer.liveness_result(healer.attribution.stamp(), False)
    assert await healer.evaluate() is Action.RESELECT
    assert healer.route == "r2" and healer.connection.source == [SOURCE2]
    during = hook.stamps[-1]  # began while the hook ran: its pings went out on r1

    clock.now += 10  # long past the backoff: any failure counted now would move again
    healer.liveness_result(during, False)
    healer.liveness_result(in_flight, True)  # a late pass about r1 proves nothing for r2
    assert healer.stats.stale_results == 2
    assert healer.liveness_ok is None and healer.policy.failures == 1
    assert await healer.evaluate() is not Action.RESELECT
    assert healer.route == "r2" and healer.stats.reselects == 1 and len(hook.calls) == 1

    healer.liveness_result(healer.attribution.stamp(), True)
    assert healer.policy.failures == 0
    kinds = [(event.kind, event.route) for event in healer.events]
    assert kinds.index(("reselect", "r2")) < kinds.index(("liveness-pass", "r2"))


async def test_a_move_restarts_the_liveness_round_on_the_new_connection() -> None:
    old, new = Connection(source=[SOURCE1]), Connection(source=[SOURCE2])
    attribution = Attribution("r1", old)
    checked: list[Connection] = []
    reports: list[tuple[Stamp, bool]] = []

    async def check(deadline: float, connection: Connection) -> bool:
        checked.append(connection)
        if connection == old:  # the old path is dead: fails only at its deadline
            await asyncio.sleep(max(deadline - time.monotonic(), 0))
            return False
        return True

    loop = LivenessLoop(
        check,
        LivenessSettings(interval=0.05, timeout=30.0),
        attribution.stamp,
        lambda stamp, alive: reports.append((stamp, alive)),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        await wait_for(lambda: old in checked, 5, what="a round on the old connection")
        attribution.moving()
        attribution.moved("r2", new)
        loop.restart()
        await wait_for(lambda: bool(reports), 5, what="a result on the new connection")
        assert reports[0] == (attribution.stamp(), True)
        assert loop.abandoned == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert all(stamp.connection == new for stamp, _ in reports)


@pytest.fixture
async def running(bus: Bus) -> AsyncIterator[Callable[[PathwatchConfig, str], Healer]]:
    """Start healers with a check that always fails and a recording hook; stop them after."""
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    def start(config: PathwatchConfig, service: str) -> Healer:
        healer = Healer(
            config, bus, service=service, route="r1", hook=Hook(), check=never_alive, environ={}
        )
        tasks.append(asyncio.create_task(healer.run(stop)))
        return healer

    yield start
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)


async def test_a_heal_command_ends_the_backoff_at_once(
    bus: Bus, running: Callable[[PathwatchConfig, str], Healer]
) -> None:
    service = f"hcmd{uuid.uuid4().hex[:6]}"
    healer = running(make_config(service, backoff_base=20), service)
    await wait_for(lambda: healer.route == "r2", 5, what="the first move")
    await wait_for(lambda: healer.liveness_ok is False, 5, what="r2 failing too")
    assert healer.policy.backoff_remaining() > 15

    async def command(ts: float) -> None:
        sent = HealCommand(id=f"h{ts}", service=service, route="r2", reason="test", ts=ts)
        await bus.nc.publish(subjects.cmd_heal(service, "r2"), encode(sent))

    # issued before the last reselect, which already acted on what it says: no news
    await command(healer.policy.last_heal_at - 1)
    await wait_for(lambda: healer.stats.heal_commands == 1, 5, what="the old command")
    assert healer.route == "r2" and healer.policy.backoff_remaining() > 15
    await command(time.time())
    await wait_for(lambda: healer.route == "r1", 5, what="the move the heal command asked for")
    assert healer.stats.heal_commands == 2 and healer.stats.reselects == 2
    ended = [event for event in healer.events if event.kind == "backoff-end"]
    assert [event.detail for event in ended] == ["heal command"]


async def test_a_route_back_in_service_ends_the_backoff_at_once(
    bus: Bus, running: Callable[[PathwatchConfig, str], Healer]
) -> None:
    service = f"hkv{uuid.uuid4().hex[:6]}"
    kv = await bus.kv(subjects.KV_PATHS)

    async def put(route: str, in_service: bool) -> None:
        state = PathState(
            service=service,
            route=route,
            state="up" if in_service else "down",
            in_service=in_service,
        )
        await kv.put(subjects.path_key(service, route), encode(state))

    await put("r1", False)
    await put("r2", False)
    healer = running(make_config(service, backoff_base=20), service)
    await wait_for(lambda: healer.route == "r2", 5, what="a best-effort move to r2")
    assert healer.policy.backoff_remaining() > 15
    await put("r1", True)
    await wait_for(lambda: healer.route == "r1", 5, what="the move onto the route back in service")
    ended = [event for event in healer.events if event.kind == "backoff-end"]
    assert [event.detail for event in ended] == ["r1 back in service"]
