"""`pathwatch demo`: watch pathwatch move traffic off a sick path and back, on a namespace bed.

Builds the bed of pathwatch.testbed (client, router-1, router-2, server; two
paths), runs every part inside the client namespace (pathwatch.bench.bedstack:
embedded nats-server on the client's loopback, agent, aggregator, enforcer,
router, healer) plus a steady UDP stream, then breaks path 1 three ways —
link down, an nftables blackhole, 30 % random loss — and prints a timeline of
what each part saw: path state in KV, the client kernel's route, the stream,
and the healer. Everything is torn down at the end, also on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from agents.nsexec import run_in_netns
from pathwatch.bench.bedstack import ROUTES, Stack, StackOptions
from pathwatch.testbed import FAULTS, HEALER_ADDRESS, Bed, bed

FAULT_LABELS = {
    "link-down": "link down (router-1's end of link 1)",
    "blackhole": "nftables blackhole in router-1",
    "loss": "30 % random loss in router-1 (iptables -m statistic)",
}
#: Seconds a fault stays on after traffic has moved.
FAULT_HOLD_S = 2.0
STEP_TIMEOUT_S = 30.0


@dataclass
class Snapshot:
    path1: str
    route: str
    healer: str
    traffic: str


class Timeline:
    """Prints a line whenever something the demo watches changes."""

    def __init__(self, made: Bed, stack: Stack, console: Console) -> None:
        self.made = made
        self.stack = stack
        self.console = console
        self.started = time.monotonic()
        self.last: Snapshot | None = None
        self.healer_events = 0

    def say(self, text: str, style: str = "") -> None:
        elapsed = time.monotonic() - self.started
        self.console.print(f"[dim]+{elapsed:6.2f} s[/]  [{style or 'default'}]{text}[/]")

    def _path_of(self, gateway: str | None) -> str:
        if gateway == self.made.gateway1:
            return "path 1"
        if gateway == self.made.gateway2:
            return "path 2"
        return "no route"

    async def snapshot(self) -> Snapshot:
        state = await self.stack.path_state(ROUTES[0])
        path1: str = "unknown" if state is None else state.state
        if state is not None and state.reason and state.state != "up":
            path1 += f" ({state.reason})"
        flowing = self.stack.stream.flowing_since(time.monotonic() - 0.3, run=5) is not None
        healer = self.stack.healer.route if self.stack.healer else "-"
        return Snapshot(
            path1=path1,
            route=self._path_of(await self.stack.kernel_gateway()),
            healer=f"{healer} ({self._path_of(await self.stack.kernel_gateway(HEALER_ADDRESS))})",
            traffic="flowing" if flowing else "stalled",
        )

    async def poll(self) -> Snapshot:
        now = await self.snapshot()
        before = self.last
        if before is None or now.path1 != before.path1:
            self.say(f"KV {ROUTES[0]}: {now.path1}", "cyan")
        if before is None or now.route != before.route:
            self.say(f"client kernel route to the service -> {now.route}", "bold green")
        if before is None or now.traffic != before.traffic:
            self.say(
                f"client traffic {now.traffic}", "green" if now.traffic == "flowing" else "red"
            )
        healer = self.stack.healer
        if healer is not None:
            for event in healer.events[self.healer_events :]:
                self.say(f"healer: {event.kind} {event.route} {event.detail}", "magenta")
            self.healer_events = len(healer.events)
        self.last = now
        return now

    async def until(self, condition: Callable[[Snapshot], bool], timeout: float) -> Snapshot:
        deadline = time.monotonic() + timeout
        while True:
            self.stack.check_alive()
            now = await self.poll()
            if condition(now):
                return now
            if time.monotonic() > deadline:
                raise TimeoutError(f"demo step did not finish within {timeout:g} s")
            await asyncio.sleep(0.02)


def _after(moment: float) -> Callable[[Snapshot], bool]:
    """A condition that holds once `time.monotonic()` has passed `moment`."""
    return lambda _snapshot: time.monotonic() > moment


async def _scenario(made: Bed, options: StackOptions, console: Console) -> None:
    async with Stack(made, options) as stack:
        timeline = Timeline(made, stack, console)
        timeline.say("bed up: every part runs in the client namespace; stream started", "bold")
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            steps = progress.add_task("faults on path 1", total=len(FAULTS) * 2)
            for fault in FAULTS:
                await timeline.until(
                    lambda s: s.path1 == "up" and s.route == "path 1" and s.traffic == "flowing",
                    STEP_TIMEOUT_S,
                )
                timeline.say(f"FAULT: {FAULT_LABELS[fault]}", "bold red")
                made.apply_fault(fault)
                await timeline.until(
                    lambda s: s.route == "path 2" and s.traffic == "flowing", STEP_TIMEOUT_S
                )
                progress.advance(steps)
                await timeline.until(_after(time.monotonic() + FAULT_HOLD_S), STEP_TIMEOUT_S)
                made.clear_faults()
                timeline.say(
                    f"fault cleared; path 1 returns after hold-down ({options.hold_down:g} s)"
                    " and one probation window",
                    "bold yellow",
                )
                await timeline.until(
                    lambda s: s.route == "path 1" and s.path1 == "up",
                    options.hold_down + STEP_TIMEOUT_S,
                )
                progress.advance(steps)
        timeline.say("done: traffic moved to path 2 and back three times", "bold")


async def run_demo(console: Console, hold_down: float = 6.0) -> None:
    """Build the bed, run the scenario, tear everything down (root only)."""
    options = StackOptions(hold_down=hold_down, healer=True)
    with bed() as made:
        console.print(f"namespaces: {made.client}, {made.router1}, {made.router2}, {made.server}")
        await run_in_netns(made.client, lambda: _scenario(made, options, console))
