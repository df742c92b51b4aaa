"""Since when an aggregator has received every measurement of its partition.

Measurements travel over core NATS, which keeps nothing for a subscriber that is
not there: a replica that subscribed, or reconnected, after a window began has
missed part of it. `Coverage.since(connected)` is the time (the aggregator's clock)
from which it has been receiving without a gap: the subscription, then each
reconnect; while disconnected, now (what closes then is partial). Each window
carries it as `receiving_since`, and the enforcer prefers a window whose replica
was receiving before the window began (`enforcer.window_choice`).
"""

from __future__ import annotations

from collections.abc import Callable

from pathwatch.runtime.bus import Bus


class Coverage:
    """The start of the current gap-free reception of one aggregator replica."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._since: float | None = None

    def start(self, bus: Bus) -> None:
        """Called once the subscriptions are in place; follows the reconnects of `bus`."""
        self._since = self._clock()
        bus.reconnect_callbacks.append(self._reconnected)

    def stop(self, bus: Bus) -> None:
        if self._reconnected in bus.reconnect_callbacks:
            bus.reconnect_callbacks.remove(self._reconnected)

    async def _reconnected(self) -> None:
        self._since = self._clock()

    def since(self, connected: bool) -> float:
        """Since when reception has been complete (now while not connected or started)."""
        now = self._clock()
        if not connected or self._since is None:
            return now
        return self._since
