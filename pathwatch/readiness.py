"""Readiness of a role, as `/readyz` reports it (the API and the `/metrics` server).

`/healthz` means "the process is healthy" (a liveness probe: restart me if not);
`/readyz` means "it can do its job now" (a readiness probe: route work to me): NATS
connected and the role's subscriptions or first snapshot in place. Each requirement is a
cheap function of plain state, as the metrics server asks from its own thread.
"""

from __future__ import annotations

from collections.abc import Callable

from pathwatch.bus import Bus


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
