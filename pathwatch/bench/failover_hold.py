"""The failover bench's hold-down check: a dead path is never put back in service by
probation while its probes fail.

On the bed of `pathwatch.bench.failover`, path 1 is blackholed (both ways) and left
dead until at least `expiries` hold-downs have expired (the bench's hold-down is short,
1 s by default) and a little longer, so what followed the last expiry is seen too.
Every state of path 1 that the bench's KV watch saw in that time is checked: the check
passes when path 1 was taken out of service and stayed out (no state with `in_service`)
across those expiries. A hold-down *expires* when the wall clock passes the
`hold_down_until` of a state that held path 1 out of service (an extended hold-down has
a new `hold_down_until`, which expires in its turn). The router's kernel route going
back via path 1 during the fault is reported too (that is traffic into the black hole).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

from pathwatch.bench.bedstack import ROUTES, SERVICE, Stack
from pathwatch.bench.faults import FaultSwitch
from pathwatch.testbed import Bed
from schemas import subjects
from schemas.wire import PathState

PATH1 = subjects.path_key(SERVICE, ROUTES[0])
#: Seconds to wait for the first take-down.
TAKE_DOWN_TIMEOUT_S = 10.0
#: Seconds the fault lasts after the wanted expiries, to see what each one led to.
AFTER_LAST_EXPIRY_S = 1.0
POLL_S = 0.05
#: Characters of a state's reason printed.
REASON_CHARS = 48


@dataclass
class HoldCheck:
    """What happened to path 1 while it stayed dead (seconds after the fault)."""

    hold_down: float
    expiries_wanted: int
    fault_seconds: float = 0.0
    taken_down: float | None = None
    #: hold-downs that expired while the fault lasted (their `hold_down_until`, s after fault)
    expiries: list[float] = field(default_factory=list)
    #: each return of path 1 to service during the fault: (s after fault, state, reason)
    back_in_service: list[tuple[float, str, str]] = field(default_factory=list)
    #: the kernel route via path 1 again during the fault (s after fault)
    route_back: list[float] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (
            self.taken_down is not None
            and len(self.expiries) >= self.expiries_wanted
            and not self.back_in_service
        )


def observe(
    check: HoldCheck,
    states: list[tuple[float, PathState]],
    route_changes: list[tuple[float, str | None]],
    gateway: str,
    fault_wall: float,
    now: float,
) -> None:
    """Fill `check` from path 1's states and the route's changes (wall clock) up to `now`."""
    during = [state for _, state in states if state.updated >= fault_wall]
    down = [state for state in during if not state.in_service]
    check.taken_down = down[0].updated - fault_wall if down else None
    check.expiries = sorted(
        until - fault_wall
        for until in {s.hold_down_until for s in down if s.hold_down_until is not None}
        if until <= now and _held_until(during, until)
    )
    check.back_in_service = [
        (state.updated - fault_wall, state.state, state.reason)
        for previous, state in itertools.pairwise(during)
        if state.in_service and not previous.in_service
    ]
    if check.taken_down is not None:
        down_at = fault_wall + check.taken_down
        check.route_back = [
            at - fault_wall for at, via in route_changes if at >= down_at and via == gateway
        ]


def _held_until(states: list[PathState], until: float) -> bool:
    """Whether the state in force just before `until` held the path out until then (not a
    hold-down that was replaced before it ran out)."""
    before = [state for state in states if state.updated < until]
    return bool(before) and not before[-1].in_service and before[-1].hold_down_until == until


def _observe(check: HoldCheck, stack: Stack, gateway: str, fault_wall: float) -> None:
    changes = stack.routes.changes if stack.routes is not None else []
    states = stack.timeline.paths.get(PATH1, [])
    observe(check, states, changes, gateway, fault_wall, time.time())


async def hold_check(made: Bed, stack: Stack, switch: FaultSwitch, expiries: int = 2) -> HoldCheck:
    """Blackhole path 1 until `expiries` hold-downs expired (the bed must be healthy)."""
    hold_down = stack.options.hold_down
    check = HoldCheck(hold_down, expiries)
    # each hold-down cycle: the hold-down, then at most a window to take it down again
    limit = TAKE_DOWN_TIMEOUT_S + (expiries + 1) * (hold_down + stack.options.detection_window)
    fault_wall = await switch.apply("blackhole", 0.0)
    try:
        deadline = time.monotonic() + limit
        enough_at: float | None = None
        while time.monotonic() < deadline:
            stack.check_alive()
            _observe(check, stack, made.gateway1, fault_wall)
            if check.taken_down is None and time.time() - fault_wall > TAKE_DOWN_TIMEOUT_S:
                break
            if enough_at is None and len(check.expiries) >= expiries:
                enough_at = time.monotonic() + AFTER_LAST_EXPIRY_S
            if enough_at is not None and time.monotonic() >= enough_at:
                break
            await asyncio.sleep(POLL_S)
    finally:
        check.fault_seconds = time.time() - fault_wall
        made.clear_faults()
    _observe(check, stack, made.gateway1, fault_wall)
    check.expiries = [at for at in check.expiries if at <= check.fault_seconds]
    return check


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values) or "none"


def describe_hold(check: HoldCheck) -> str:
    taken = "never" if check.taken_down is None else f"{check.taken_down * 1000:.0f} ms"
    back = (
        "; ".join(
            f"{at:.2f} s {state} ({reason[:REASON_CHARS]})"
            for at, state, reason in check.back_in_service
        )
        or "never"
    )
    return (
        f"dead path held: blackhole on path 1 for {check.fault_seconds:.1f} s, hold-down"
        f" {check.hold_down:g} s: taken down after {taken}; hold-downs expired at"
        f" {_seconds(check.expiries)} s; back in service during the fault: {back};"
        f" kernel route via path 1 again at {_seconds(check.route_back)} s"
    )


def hold_target(check: HoldCheck) -> str:
    verdict = "PASS" if check.passed else "FAIL"
    return (
        f"  dead path stays out of service across >= {check.expiries_wanted} hold-down expiries"
        f" while its probes fail: {len(check.expiries)} expiries,"
        f" {len(check.back_in_service)} times back in service: {verdict}"
    )
