"""Exactly one window per (route, window start) from the aggregator replicas.

Every replica of an aggregator partition receives all of the partition's
measurements and publishes every window, so the enforcer hears each window once
per replica. `WindowChoice.offer` passes on the one the engine judges:

* a *complete* window (its replica was receiving before the window began:
  `receiving_since <= window_start`) is taken at once, and the other replicas'
  copies of that window are dropped (counted in `duplicates`, not as drops: they
  are expected);
* a *partial* window (its replica subscribed or reconnected after the window
  began) is held for `hold_s`, waiting for a complete copy; when none comes,
  `due` hands over the most complete copy held (earliest `receiving_since`);
* a window older than the last one taken for its route is dropped
  (`stats:stale`).

So two replicas never split a window, losing a replica loses no window (the
others made every window too), a replica that has just started cannot displace
a complete window with its partial one, and which of two complete copies is
taken (the first to arrive) changes nothing but the replica shown: both hold
the same measurements. The table holds one entry per configured route;
windows of other routes pass through (the engine counts them).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass

import msgspec

from schemas.codec import DecodeError, decode_message
from schemas.wire import PathState, ReplicaName, Timestamp

#: Seconds a partial window waits for a complete copy from another replica. The
#: replicas close a window at the same moment by their (synchronised) clocks, so
#: a copy that is coming arrives well within this.
PARTIAL_HOLD_S = 1.0


class WindowHeader(msgspec.Struct, frozen=True):
    """The fields of a WindowStats that the choice needs (the rest is skipped)."""

    service: str
    route: str
    window_start: Timestamp
    replica: ReplicaName = ""
    receiving_since: Timestamp = 0.0


@dataclass(frozen=True)
class Held:
    """A partial window waiting for a complete copy."""

    start: float
    since: float
    replica: str
    payload: bytes
    deadline: float


@dataclass
class Taken:
    """The last window taken for a route, and from which replica."""

    start: float = -math.inf
    replica: str = ""


Key = tuple[str, str]


class WindowChoice:
    """Which copy of each window the engine judges (see the module docstring)."""

    def __init__(
        self,
        routes: Collection[Key],
        dropped: Counter[str],
        hold_s: float = PARTIAL_HOLD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.taken: dict[Key, Taken] = {key: Taken() for key in routes}
        self.held: dict[Key, Held] = {}
        self.dropped = dropped
        self.duplicates = 0
        self.hold_s = hold_s
        self.clock = clock

    def follow(self, routes: Collection[Key]) -> None:
        """Take the routes of a new config: new ones start afresh, removed ones are
        forgotten (with any copy held for them)."""
        self.taken = {key: self.taken.get(key) or Taken() for key in routes}
        self.held = {key: held for key, held in self.held.items() if key in self.taken}

    def offer(self, service: str, route: str, payload: bytes) -> list[bytes]:
        """The windows to judge now, oldest first, for a window that arrived on
        `pw.stats.<service>.<route>` (an undecodable one is passed on for the engine
        to count)."""
        try:
            header = decode_message(payload, WindowHeader)
        except DecodeError:
            return [payload]
        key = (service, route)
        taken = self.taken.get(key)
        if taken is None:
            return [payload]  # not a configured route: the engine counts it
        if (header.service, header.route) != key:
            self.dropped["stats:subject"] += 1
            return []
        start = header.window_start
        if start <= taken.start:
            if start == taken.start:
                self.duplicates += 1
            else:
                self.dropped["stats:stale"] += 1
            return []
        out: list[bytes] = []
        held = self.held.get(key)
        if held is not None and held.start < start:
            out.append(self._take(key, self.held.pop(key)))  # no complete copy came
            held = None
        if header.receiving_since <= start:
            self.held.pop(key, None)
            taken.start, taken.replica = start, header.replica
            out.append(payload)
        elif held is None or (header.receiving_since, header.replica) < (held.since, held.replica):
            deadline = held.deadline if held is not None else self.clock() + self.hold_s
            self.held[key] = Held(start, header.receiving_since, header.replica, payload, deadline)
        else:
            self.duplicates += 1
        return out

    def due(self) -> list[tuple[str, str, bytes]]:
        """Partial windows whose hold has ended without a complete copy: judge them."""
        now = self.clock()
        ready = [key for key, held in self.held.items() if held.deadline <= now]
        return [(*key, self._take(key, self.held.pop(key))) for key in ready]

    def _take(self, key: Key, held: Held) -> bytes:
        taken = self.taken[key]
        taken.start, taken.replica = held.start, held.replica
        return held.payload

    def stamp(self, state: PathState) -> PathState:
        """`state` naming the replica whose window of its route was taken last."""
        taken = self.taken.get((state.service, state.route))
        if taken is None or taken.replica == state.window_replica:
            return state
        return msgspec.structs.replace(state, window_replica=taken.replica)
