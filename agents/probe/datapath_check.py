"""Datapath liveness check for healing clients (DESIGN.md, "Datapath healing").

A liveness check is an async callable `(deadline, connection) -> bool`:

* `deadline` is an absolute `time.monotonic()` value; the check returns by
  then (a healer running every 200 ms with a 1 s timeout passes
  `time.monotonic() + 1.0`);
* `connection` is a `Connection`: the `source` addresses of the client side
  and the `destination` addresses of the far side of one connection (plain IP
  strings, IPv4 or IPv6, optionally with an `interface` to pin the pings to).

The built-in check, `IcmpLivenessCheck`, pings every source x destination
pair from that source address (pairs of different IP families are skipped),
sending `pings` echo requests per pair spaced evenly over the time left, and
returns True only when every pair got at least one reply (it returns as soon
as that is known). A connection without any same-family pair is not alive.

Usage by a healer::

    check = IcmpLivenessCheck(IcmpEngine())
    alive = await check(time.monotonic() + 1.0, Connection(source=[...], destination=[...]))

Any other async callable with the same signature can replace it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agents.probe.icmp_engine import IcmpEngine
from agents.probe.sockopts import family_of


@dataclass(frozen=True)
class Connection:
    """The addresses of one connection's two ends (as a healer sees them)."""

    source: list[str] = field(default_factory=list)
    destination: list[str] = field(default_factory=list)
    interface: str | None = None

    def pairs(self) -> list[tuple[str, str]]:
        """Every (source, destination) pair of the same IP family."""
        return [
            (src, dst)
            for src in self.source
            for dst in self.destination
            if family_of(src) == family_of(dst)
        ]


LivenessCheck = Callable[[float, Connection], Awaitable[bool]]


class IcmpLivenessCheck:
    """The built-in `LivenessCheck`: every same-family pair must answer one of a few pings."""

    def __init__(self, engine: IcmpEngine, pings: int = 3, dscp: int = 0) -> None:
        self.engine = engine
        self.pings = max(pings, 1)
        self.dscp = dscp

    async def _pair_alive(
        self, source: str, destination: str, deadline: float, interface: str | None
    ) -> bool:
        spacing = max(deadline - time.monotonic(), 0.0) / self.pings
        tasks: list[asyncio.Task[bool]] = []

        async def one(index: int) -> bool:
            await asyncio.sleep(index * spacing)
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            result = await self.engine.ping(
                destination, timeout=left, dscp=self.dscp, interface=interface, source=source
            )
            return result.outcome == "ok"

        tasks = [asyncio.create_task(one(index)) for index in range(self.pings)]
        try:
            for finished in asyncio.as_completed(tasks):
                if await finished:
                    return True
            return False
        finally:
            for task in tasks:
                task.cancel()

    async def __call__(self, deadline: float, connection: Connection) -> bool:
        pairs = connection.pairs()
        if not pairs:
            return False
        results = await asyncio.gather(
            *(self._pair_alive(src, dst, deadline, connection.interface) for src, dst in pairs)
        )
        return all(results)
