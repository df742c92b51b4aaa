"""Health and readiness of a role, as `/healthz` and `/readyz` report them (the API and
the `/metrics` server).

`/healthz` means "the process is healthy" (a liveness probe: restart me if not);
`/readyz` means "it can do its job now" (a readiness probe: route work to me): NATS
connected and the role's subscriptions or first snapshot in place. Each requirement is a
cheap function of plain state, as the metrics server asks from its own thread; that
server also needs LoopLiveness, as it would answer even with the event loop dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from pathwatch.runtime.bus import Bus


class Readiness:
    """Named requirements; ready when every one holds."""

    def __init__(self) -> None:
        self._requirements: dict[str, Callable[[], bool]] = {}

    def require(self, what: str, holds: Callable[[], bool]) -> Readiness:
        self._requirements[what] = holds
        return self

    def waiting_for(self) -> list[str]:
        """The requirements that do not hold yet (empty: ready)."""
        return [what for what, holds in self._requirements.items() if not holds()]

    def report(self) -> tuple[int, dict[str, object]]:
        """HTTP status (200 ready, 503 not) and body for `/readyz`."""
        waiting = self.waiting_for()
        return (503 if waiting else 200), {"ready": not waiting, "waiting_for": waiting}


def nats_connected(bus: Bus) -> Callable[[], bool]:
    """A requirement: the bus is connected (not reconnecting, not closed)."""
    return lambda: bool(bus.nc.is_connected)


class LoopLiveness:
    """Healthy while the event loop runs: a task notes the time every BEAT_S; more than
    STALL_S without a beat (loop hung or dead) is unhealthy."""

    BEAT_S = 1.0
    STALL_S = 10.0

    def __init__(self) -> None:
        self._beat = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start beating on the running loop (none running: always healthy)."""
        with contextlib.suppress(RuntimeError):
            self._task = asyncio.get_running_loop().create_task(self._run(), name="liveness")

    async def _run(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(self.BEAT_S)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def report(self) -> tuple[int, dict[str, object]]:
        """HTTP status (200 healthy, 503 not) and body for `/healthz`."""
        stalled = time.monotonic() - self._beat
        if self._task is None or stalled <= self.STALL_S:
            return 200, {"status": "ok"}
        return 503, {"status": f"event loop stalled for {stalled:.0f} s"}
