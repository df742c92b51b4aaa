"""The healer, router and the rest of pathwatch on the failover bed (pathwatch.testbed).

Real namespaces (client, router-1, router-2, server; addresses only inside them, no
route out), a real nats-server on the client's loopback, every part on its own
connection. Scenarios: path 1 broken and back after hold-down; NATS stopped while
both paths work; both paths down (best-effort, no heal loop); the healer's own check
as the only evidence (no probe agent), link down; loss only on the healer's own
destination on path 1; both paths down, then one back. Reselects are counted from
the healer's `/metrics` (served inside the client namespace, scraped over HTTP).
Timings are printed (`-s`), not asserted beyond generous bounds; the benches own speed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents.healer.events import HealEvent
from agents.healer.healer import Healer, service_level
from agents.healer.metrics import serve_metrics
from agents.nsexec import run_in_netns
from pathwatch.bench.bedstack import ROUTES, SERVICE, Stack, StackOptions
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


class Scrape:
    """The healer's `/metrics`, served on the client namespace's loopback."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    async def value(self, name: str, **labels: str) -> float | None:
        async with httpx.AsyncClient() as client:
            text = (await client.get(self.url, timeout=5)).text
        wanted = {"service": SERVICE, **labels}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == wanted:
                    return sample.value
        return None


@contextlib.asynccontextmanager
async def metrics_of(healer: Healer) -> AsyncIterator[Scrape]:
    server = serve_metrics(healer, "127.0.0.1:0")
    try:
        yield Scrape(server.port)
    finally:
        server.stop()


def first(healer: Healer, kind: str, route: str, after: float = 0.0) -> HealEvent | None:
    return next(
        (e for e in healer.events if e.kind == kind and e.route == route and e.ts >= after), None
    )


async def moved_once_and_stayed(made: Bed, stack: Stack, healer: Healer, fault_at: float) -> None:
    """One move to path 2, proven by a liveness pass there, and still there 2 s later
    (a stale round on path 1 would have come back and the backoff run out by then)."""
    async with metrics_of(healer) as scrape:
        await wait_for(
            lambda: first(healer, "liveness-pass", PATH2, fault_at) is not None,
            5,
            what="path 2 proven by the healer's check",
        )
        proven = first(healer, "liveness-pass", PATH2, fault_at)
        moved = first(healer, "reselect", PATH2, fault_at)
        assert proven is not None and moved is not None
        await wait_for(lambda: time.time() > proven.ts + 2.0, 4, what="2 s on path 2")
        assert await scrape.value("pathwatch_healer_reselects_total") == 1
        assert await scrape.value("pathwatch_healer_route", route=PATH2) == 1
        stale = await scrape.value("pathwatch_healer_liveness_stale_results_total")
        assert healer.route == PATH2
        assert await stack.kernel_gateway(HEALER_ADDRESS) == made.gateway2
    print(
        f"\nhealed: reselect {moved.ts - fault_at:.3f} s after the fault, path 2 proven at"
        f" {proven.ts - fault_at:.3f} s; reselects 1; stale results discarded {stale}"
    )
    assert proven.ts - fault_at < 3.0  # generous; the issue asks for 1.5 s (printed above)


async def test_own_check_only_link_down_moves_once_and_never_back() -> None:
    async def scenario(made: Bed, stack: Stack) -> None:
        healer = stack.healer
        assert healer is not None
        await wait_for(
            lambda: healer.liveness_ok is True and healer.monitor.control_up(),
            15,
            what="the healer on a live path 1 with the control plane up",
        )
        assert await stack.kernel_gateway(HEALER_ADDRESS) == made.gateway1
        fault_at = time.time()
        made.apply_fault("link-down")
        await moved_once_and_stayed(made, stack, healer, fault_at)

    await on_bed(scenario, StackOptions(agent=False, hold_down=2))


async def test_loss_only_on_the_healers_destination_never_returns_to_path_1() -> None:
    async def scenario(made: Bed, stack: Stack) -> None:
        healer = stack.healer
        assert healer is not None
        await healthy(made, stack)
        await wait_for(lambda: healer.liveness_ok is True, 5, what="the healer's check passing")
        fault_at = time.time()
        made.drop_on_path1(HEALER_ADDRESS)
        await moved_once_and_stayed(made, stack, healer, fault_at)
        state = await stack.path_state(PATH1)
        assert state is not None and state.in_service  # the enforcer kept path 1 up
        assert stack.stream.flowing_since(time.monotonic() - 1.0, run=5) is not None

    await on_bed(scenario, StackOptions(hold_down=2))


async def test_both_paths_down_then_one_back_the_client_follows_kv() -> None:
    async def scenario(made: Bed, stack: Stack) -> None:
        healer = stack.healer
        assert healer is not None
        await healthy(made, stack)
        made.apply_fault("blackhole")
        made.break_path2()
        # heals onto dead paths until the next one is several seconds away
        await wait_for(
            lambda: healer.policy.failures >= 5 and healer.policy.backoff_remaining() > 5,
            25,
            what="a long backoff after repeated failed heals",
        )
        back = PATH1 if healer.route == PATH2 else PATH2
        backoff_left = healer.policy.backoff_remaining()
        if back == PATH1:
            made.clear_faults()
        else:
            made.restore_path2()
        restored = time.time()
        # when the route first rose in KV after the clear (into service, or probation to up)
        level, rose_at = [service_level(await stack.path_state(back))], [0.0]

        async def up_and_on_it() -> bool:
            now = service_level(await stack.path_state(back))
            if now > level[0] and not rose_at[0]:
                rose_at[0] = time.time()
            level[0] = now
            return now == 2 and healer.route == back

        await wait_for(
            up_and_on_it, 15, interval=0.01, what=f"{back} up in KV and the healer on it"
        )
        moved = [e for e in healer.events if e.kind == "reselect" and e.route == back][-1]
        await wait_for(
            lambda: first(healer, "liveness-pass", back, moved.ts) is not None,
            5,
            what=f"{back} proven by the healer's check",
        )
        proven = first(healer, "liveness-pass", back, moved.ts)
        assert proven is not None
        ended = [e for e in healer.events if e.kind == "backoff-end" and e.ts <= moved.ts][-1]
        kv_at = rose_at[0] or restored  # already in service at the clear: from the clear
        print(
            f"\n{back} first rose in KV {kv_at - restored:.3f} s after the fault cleared;"
            f" the healer moved onto it {moved.ts - kv_at:+.3f} s from then, and its check"
            f" passed there {proven.ts - kv_at:+.3f} s from then (backoff left at the clear:"
            f" {backoff_left:.1f} s; the move came after: {ended.detail})"
        )
        assert ended.detail != "expired"  # a heal command or the route back ended the wait
        assert await stack.kernel_gateway(HEALER_ADDRESS) == (
            made.gateway1 if back == PATH1 else made.gateway2
        )
        assert proven.ts - kv_at < 2.5  # generous; the issue asks for the client within 1 s

    await on_bed(scenario, StackOptions(hold_down=2))
