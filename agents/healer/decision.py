"""The healing decision table and the backoff between failed heals: pure, clock injected.

The table of DESIGN.md ("Healing"):

| control plane | data plane | action |
|---|---|---|
| up   | up   | nothing (once back from "down / up": re-request the same endpoint) |
| up   | down | reselect: a new endpoint |
| down | up   | keep the working connection; re-request the same endpoint later |
| down | down | reselect (best-effort: without the load balancer) |

A connection whose data plane works is never torn down. Reselects are
spaced by an exponential backoff with jitter while heals keep failing (the
heal loops users hit with the service-mesh healer); news that should end the
wait (a route back in service, a heal command) ends it at once with
`end_backoff`, keeping the failure count, which only a working data plane
resets. Which liveness results count at all is `agents.healer.attribution`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    """What the healer does after one observation."""

    NOTHING = "nothing"
    KEEP = "keep"
    RESELECT = "reselect"
    REREQUEST = "rerequest-same"
    WAIT = "wait"


def table(control_up: bool, data_up: bool) -> Action:
    """The bare decision table (no history): see the module docstring."""
    if data_up:
        return Action.NOTHING if control_up else Action.KEEP
    return Action.RESELECT


@dataclass(frozen=True)
class Decision:
    """An action, why, and (for WAIT) when a reselect may be tried again."""

    action: Action
    reason: str
    retry_at: float | None = None


@dataclass(frozen=True)
class Backoff:
    """Delay before the next heal after `failures` failed ones: base x 2^(n-1), capped, jittered."""

    base: float = 0.5
    cap: float = 30.0
    jitter: float = 0.25

    def delay(self, failures: int, draw: float) -> float:
        """`draw` is uniform in [0, 1); the delay varies by +/- `jitter` around the nominal one."""
        if failures <= 0:
            return 0.0
        nominal = min(self.cap, self.base * 2.0 ** min(failures - 1, 30))
        return max(0.0, nominal * (1.0 + self.jitter * (2.0 * draw - 1.0)))


class HealPolicy:
    """The decision table with the history it needs: backoff and a pending re-request."""

    def __init__(
        self,
        clock: Callable[[], float],
        backoff: Backoff | None = None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.clock = clock
        self.backoff = backoff or Backoff()
        self.draw = draw
        self.failures = 0
        self.retry_at = 0.0
        self.heals = 0
        self.last_heal_at = 0.0
        self.rerequest_pending = False
        self.healing = False
        self.last_heal_succeeded = False
        self.control_seen_up = False

    def decide(self, control_up: bool, data_up: bool) -> Decision:
        """The action for the current evidence; see the module docstring."""
        cell = table(control_up, data_up)
        if control_up:
            self.control_seen_up = True
        if cell is Action.NOTHING:
            if self.rerequest_pending:
                self.rerequest_pending = False
                return Decision(
                    Action.REREQUEST, "control plane back: re-requesting the same endpoint"
                )
            return Decision(Action.NOTHING, "control and data plane up")
        if cell is Action.KEEP:
            # re-request once it is back, unless it was never up (nothing to re-request yet)
            self.rerequest_pending = self.rerequest_pending or self.control_seen_up
            return Decision(
                Action.KEEP, "control plane down, data plane up: keeping the connection"
            )
        now = self.clock()
        if self.healing:
            return Decision(Action.WAIT, "a heal is in progress", self.retry_at)
        if now < self.retry_at:
            return Decision(
                Action.WAIT,
                f"backing off after {self.failures} failed heal(s)",
                self.retry_at,
            )
        plane = "control and data plane down" if not control_up else "data plane down"
        return Decision(Action.RESELECT, f"{plane}: reselecting")

    def heal_started(self) -> None:
        """A reselect begins (no other starts until it finishes)."""
        self.healing = True
        self.heals += 1
        self.last_heal_at = self.clock()
        self.rerequest_pending = False

    def heal_finished(self, succeeded: bool) -> None:
        """A reselect ended. Until a live data plane proves it (`data_plane_ok`) every heal
        counts as failed, so the next one waits the backoff: an endpoint that dies again
        at once, or no endpoint at all, cannot make the healer loop."""
        self.healing = False
        self.failures += 1
        self.retry_at = self.clock() + self.backoff.delay(self.failures, self.draw())
        self.last_heal_succeeded = succeeded

    def data_plane_ok(self) -> None:
        """A liveness pass on the current endpoint: the heals succeeded, no more backoff."""
        self.failures = 0
        self.retry_at = 0.0

    def end_backoff(self) -> bool:
        """Allow a reselect at once (the failure count stays); whether a wait was running."""
        waiting = self.in_backoff()
        self.retry_at = 0.0
        return waiting

    def backoff_remaining(self) -> float:
        """Seconds until a reselect may be tried again (0: none pending)."""
        return max(self.retry_at - self.clock(), 0.0)

    def in_backoff(self) -> bool:
        return self.backoff_remaining() > 0.0
