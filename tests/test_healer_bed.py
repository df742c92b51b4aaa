"""The healer, router and the rest of pathwatch on the failover bed (pathwatch.testbed).

Real namespaces (client, router-1, router-2, server; addresses only inside them, no
route out), a real nats-server on the client's loopback, every part on its own
connection. Scenarios: path 1 broken and back after hold-down; NATS stopped while
both paths work; both paths down (best-effort, no heal loop).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest

from agents.nsexec import run_in_netns
from pathwatch.bench.bedstack import ROUTES, Stack, StackOptions
from pathwatch.testbed import HEALER_ADDRESS, Bed, bed
from tests.conftest import wait_for
from tests.netns import requires_iptables, requires_nft, requires_root

pytestmark = [pytest.mark.netns, requires_root, requires_nft, requires_iptables]

PATH1, PATH2 = ROUTES


async def on_bed(scenario: Callable[[Bed, Stack], Awaitable[None]], options: StackOptions) -> None:
    """Build a bed, run the stack inside its client namespace, run `scenario`, tear down."""
    with bed() as made:

        async def inside() -> None:
            async with Stack(made, options) as stack:
                await scenario(made, stack)

        await run_in_netns(made.client, inside)


async def healthy(made: Bed, stack: Stack) -> None:
    """Path 1 up in KV, the router's and the healer's routes on path 1, traffic flowing."""

    async def check() -> bool:
        stack.check_alive()
        state = await stack.path_state(PATH1)
        return (
            state is not None
            and state.state == "up"
            and await stack.router_gateway() == made.gateway1
            and await stack.kernel_gateway(HEALER_ADDRESS) == made.gateway1
            and stack.stream.flowing_since(time.monotonic() - 0.5, run=5) is not None
        )

    await wait_for(check, 15, interval=0.05, what="a healthy bed on path 1")


async def test_broken_path_moves_traffic_to_path_2_and_back_after_hold_down() -> None:
    async def scenario(made: Bed, stack: Stack) -> None:
        assert stack.healer is not None
        await healthy(made, stack)
        fault_at = time.monotonic()
        made.apply_fault("blackhole")

        async def moved() -> bool:
            stack.check_alive()
            state = await stack.path_state(PATH1)
            return (
                state is not None
                and not state.in_service
                and await stack.router_gateway() == made.gateway2
                and await stack.kernel_gateway() == made.gateway2
            )

        await wait_for(moved, 5, what="path 1 down in KV and the kernel route on path 2")
        await wait_for(
            lambda: stack.healer is not None and stack.healer.route == PATH2,
            5,
            what="the healer on path 2",
        )
        assert await stack.kernel_gateway(HEALER_ADDRESS) == made.gateway2
        await wait_for(
            lambda: stack.stream.flowing_since(fault_at) is not None,
            5,
            what="client traffic flowing again",
        )

        made.clear_faults()

        async def back() -> bool:
            stack.check_alive()
            state = await stack.path_state(PATH1)
            return (
                state is not None
                and state.in_service
                and await stack.router_gateway() == made.gateway1
            )

        await wait_for(back, 10, what="path 1 back in service after hold-down")
        # the healer's working connection on path 2 is kept: one reselect, no loop
        assert stack.healer.route == PATH2
        assert stack.healer.stats.reselects == 1
        kinds = [event.kind for event in stack.healer.events]
        assert kinds.count("reselect") == 1

    await on_bed(scenario, StackOptions(hold_down=2))


async def test_nats_outage_with_working_paths_tears_nothing_down() -> None:
    async def scenario(made: Bed, stack: Stack) -> None:
        healer = stack.healer
        assert healer is not None
        await healthy(made, stack)
        assert healer.liveness_loop is not None
        await wait_for(healer.monitor.control_up, 5, what="control plane up")
        rerequests = healer.stats.rerequests

        await stack.stop_nats()
        await wait_for(lambda: not healer.monitor.control_up(), 5, what="control plane down")
        liveness = healer.liveness_loop
        rounds = liveness.rounds
        # the data plane keeps being checked (and passing) during the outage
        await wait_for(
            lambda: liveness.rounds >= rounds + 8, 5, what="liveness rounds during the outage"
        )
        assert healer.liveness_ok is True
        assert healer.route == PATH1 and healer.stats.reselects == 0
        assert await stack.router_gateway() == made.gateway1
        assert await stack.kernel_gateway(HEALER_ADDRESS) == made.gateway1
        assert stack.stream.flowing_since(time.monotonic() - 0.5, run=5) is not None

        await stack.start_nats()
        await wait_for(
            lambda: healer.stats.rerequests > rerequests, 15, what="the same endpoint re-requested"
        )
        last = [event for event in healer.events if event.kind == "rerequest-same"][-1]
        assert last.route == PATH1
        assert healer.route == PATH1 and healer.stats.reselects == 0
        assert await stack.kernel_gateway(HEALER_ADDRESS) == made.gateway1
        assert await stack.router_gateway() == made.gateway1

    await on_bed(scenario, StackOptions(hold_down=2))


async def test_both_paths_down_keeps_a_best_effort_route_without_heal_loops() -> None:
    async def scenario(made: Bed, stack: Stack) -> None:
        healer = stack.healer
        assert healer is not None
        await healthy(made, stack)
        started = time.monotonic()
        made.apply_fault("blackhole")
        made.break_path2()

        async def best_effort() -> bool:
            stack.check_alive()
            states = [await stack.path_state(route) for route in ROUTES]
            return all(s is not None and s.state == "down" for s in states) and any(
                s is not None and s.best_effort for s in states
            )

        await wait_for(best_effort, 8, what="both paths down, one kept as best-effort")
        states = {route: await stack.path_state(route) for route in ROUTES}
        kept = next(route for route, s in states.items() if s is not None and s.best_effort)
        gateway = made.gateway1 if kept == PATH1 else made.gateway2
        await wait_for(
            lambda: _eq(stack.router_gateway(), gateway),
            5,
            what="the router keeping the best-effort route",
        )
        # observe the healer for a while: heals are spaced by the backoff, never a loop
        await wait_for(lambda: time.monotonic() - started > 6, 8, what="6 s of both down")
        attempts = healer.stats.reselects + healer.stats.failed_heals
        assert 1 <= attempts <= 6, healer.events

    await on_bed(scenario, StackOptions(hold_down=5))


async def _eq(value: Awaitable[str | None], expected: str) -> bool:
    return await value == expected
