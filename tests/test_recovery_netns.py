"""Probe-verified recovery on the failover bed (pathwatch.testbed): real namespaces,
real packets, the real agent, aggregator, enforcer and router on a real nats-server.

Path 1 is blackholed and stays dead: across two hold-down ends (1 s each) it must
stay out of service (never on probation, never back in the router's route), the
hold-down extended each time with the reason saying the probes have not passed.
Once the blackhole is lifted the probes pass and path 1 comes back.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest

from agents.nsexec import run_in_netns
from pathwatch.bench.bedstack import ROUTES, SERVICE, Stack, StackOptions
from pathwatch.testbed import Bed, bed
from schemas import subjects
from schemas.wire import PathState
from tests.conftest import wait_for
from tests.netns import requires_nft, requires_root

pytestmark = [pytest.mark.netns, requires_root, requires_nft]

PATH1, PATH2 = ROUTES
HOLD_DOWN = 1.0


def path1_since(stack: Stack, after: float) -> list[PathState]:
    """Path 1's states in KV, in order, decided at or after `after` (wall clock)."""
    key = subjects.path_key(SERVICE, PATH1)
    return [state for _, state in stack.timeline.paths.get(key, []) if state.updated >= after]


def routed(
    made: Bed, stack: Stack, in_service: bool, gateway: str
) -> Callable[[], Awaitable[bool]]:
    """Whether path 1's in-service flag in KV and the router's gateway are as wanted."""

    async def check() -> bool:
        stack.check_alive()
        state = await stack.path_state(PATH1)
        return (
            state is not None
            and state.in_service == in_service
            and await stack.router_gateway() == gateway
        )

    return check


async def scenario(made: Bed, stack: Stack) -> None:
    await wait_for(
        routed(made, stack, True, made.gateway1), 15, interval=0.05, what="path 1 routed"
    )

    async def up() -> bool:
        state = await stack.path_state(PATH1)
        return state is not None and state.state == "up"

    await wait_for(up, 15, interval=0.05, what="path 1 up (its probes passing)")
    fault_at = time.time()
    made.apply_fault("blackhole")

    await wait_for(
        routed(made, stack, False, made.gateway2),
        5,
        interval=0.05,
        what="path 1 withdrawn, routed on path 2",
    )

    def extended_twice() -> bool:
        stack.check_alive()
        states = path1_since(stack, fault_at)
        out = next((i for i, state in enumerate(states) if not state.in_service), len(states))
        exposed = [(s.state, s.reason) for s in states[out:] if s.in_service]
        assert not exposed, f"the dead path 1 went back into service: {exposed}"
        return len({s.hold_down_until for s in states[out:] if s.recovery_held}) >= 2

    await wait_for(extended_twice, 10, interval=0.05, what="two hold-down ends with path 1 dead")
    states = path1_since(stack, fault_at)
    out = next(i for i, state in enumerate(states) if not state.in_service)
    after = states[out:]
    assert [s for s in after if s.in_service or s.state != "down"] == [], [
        (s.state, s.in_service, s.reason) for s in after
    ]
    held = [s for s in after if s.recovery_held]
    assert all(s.recovery == "probe-verified" for s in after)
    assert all(s.reason.endswith(f"; held: {s.recovery_held}") for s in held)
    assert await stack.router_gateway() == made.gateway2

    made.clear_faults()
    cleared_at = time.time()

    await wait_for(
        routed(made, stack, True, made.gateway1),
        15,
        interval=0.05,
        what="path 1 back once its probes pass",
    )
    returned = [s for s in path1_since(stack, cleared_at) if s.in_service]
    assert returned[0].state in ("probation", "up") and returned[0].recovery_held == ""
    print(f"path 1 back {time.time() - cleared_at:.1f} s after the blackhole was lifted")


async def test_a_still_dead_path_stays_out_of_service_across_two_hold_down_ends() -> None:
    with bed() as made:

        async def inside() -> None:
            options = StackOptions(hold_down=HOLD_DOWN, healer=False)
            async with Stack(made, options) as stack:
                await scenario(made, stack)

        await run_in_netns(made.client, inside)
