"""Probe-verified recovery through the enforcer service and a real nats-server: a route
whose ICMP probe still fails at its hold-down end stays down (hold-down extended, held
reason in KV, no restore command); once the probe passes it comes back on probation."""

import asyncio
import contextlib
import time
from pathlib import Path

from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configfile import parse_config
from schemas import subjects
from schemas.codec import encode
from schemas.config import PathwatchConfig
from schemas.wire import PathEvent, PathState, RouteCommand, WindowStats
from tests.conftest import wait_for
from tests.test_enforcer_engine import ping
from tests.test_enforcer_integration import collect, names, path_state, start

__all__ = ["names"]  # the fixture, used by name

HOLD_DOWN = 1.0


def make_config(service: str, node: str) -> PathwatchConfig:
    text = f"""
enforcer: {{lease-ttl: 1}}
icmp-probe-profiles:
  ping:
    probe-interval: 1
    probe-address: [127.0.0.1]
    sla-metrics: {{max-loss: 10}}
services:
  {service}:
    address: [127.0.0.1/32]
    service-policy: {{best-effort: false}}
    service-routes:
      r1:
        next-hop: {{node: {node}, interface: lo}}
        reachability-detection:
          detection-window: 1
          hold-down: {HOLD_DOWN}
          recovery-probes: 3
          probes: [{{name: ping, icmp-probe-profile: ping}}]
"""
    return parse_config(text).config


def ping_window(service: str, start: float, ok: int) -> WindowStats:
    """One window of the ping probe to 127.0.0.1 with `ok` of 4 replies."""
    return WindowStats(
        service=service,
        route="r1",
        window_start=start,
        window_end=start + 1,
        lanes=[ping("127.0.0.1", ok)],
    )


class Feeder:
    """Publishes one window a second (as an aggregator would) with the replies set now."""

    def __init__(self, bus: Bus, service: str) -> None:
        self.bus = bus
        self.service = service
        self.ok = 4
        self.start = float(int(time.time())) - 1

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            window = ping_window(self.service, self.start, self.ok)
            await self.bus.nc.publish(subjects.stats(self.service, "r1"), encode(window))
            self.start += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.05, self.start - time.time()))


async def test_a_route_whose_probes_still_fail_stays_held_then_comes_back(
    bus: Bus, names: tuple[str, str], tmp_path: Path
) -> None:
    service, node = names
    routes = await collect(bus, subjects.cmd_route(node), RouteCommand)
    events = await collect(bus, f"pw.event.{service}.>", PathEvent)
    running = await start(make_config(service, node), bus, "solo", tmp_path / "db")
    feeder = Feeder(bus, service)
    stop = asyncio.Event()
    feeding = asyncio.create_task(feeder.run(stop))
    seen: list[PathState] = []

    async def state_is(wanted: str) -> bool:
        state = await path_state(bus, service, "r1")
        if state is not None and (not seen or seen[-1] != state):
            seen.append(state)
        return state is not None and state.state == wanted

    try:
        await wait_for(lambda: state_is("up"), 10, what="r1 up")
        feeder.ok = 0  # the path dies; the agent keeps probing it
        await wait_for(lambda: state_is("down"), 10, what="r1 down")
        [down] = [s for s in seen if s.state == "down"][:1]
        assert down.recovery == "probe-verified" and not down.in_service

        async def extended_twice() -> bool:
            state = await path_state(bus, service, "r1")
            return state is not None and state.hold_down_multiplier >= 3

        # two hold-down ends pass (1 s, then 2 s) with the probe still failing
        await wait_for(extended_twice, 10, what="the hold-down extended twice")
        held = await path_state(bus, service, "r1")
        assert held is not None and held.state == "down" and not held.in_service
        assert held.recovery_held.startswith("probes not passed since the fault: ping 127.0.0.1")
        assert held.reason.endswith(f"; held: {held.recovery_held}")
        assert [c.action for c in routes.items] == ["withdraw"]
        assert "probation" not in [e.kind for e in events.items]

        feeder.ok = 4  # the path works again
        await wait_for(lambda: any(c.action == "restore" for c in routes.items), 15, what="restore")
        back = await path_state(bus, service, "r1")
        assert back is not None and back.state in ("probation", "up") and back.in_service
        assert back.recovery_held == ""
        assert [e.kind for e in events.items if e.kind != "fresh"][:3] == [
            "path-up",
            "path-down",
            "probation",
        ]
    finally:
        stop.set()
        await feeding
        await running.halt()
