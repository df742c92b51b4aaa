"""Which connection a liveness result is about, and whether it still counts: pure.

A liveness round takes a `Stamp` when it starts: the route and the `Connection`
(addresses) it checks, and the *path epoch*. The epoch advances whenever the path
under the connection may change:

* `moving()`: a reconnect hook is about to run (the kernel route, tunnel or source
  address may change while it does, so a round already in flight may mix both paths);
* `moved(route, connection)`: the hook succeeded; the new route and connection become
  current in the same step as the epoch advances, so no round can ever pair the new
  epoch with the old connection;
* `stayed()`: the route stays (the hook failed, or re-requested the same route), but
  the hook may have changed something on the way, so rounds begun before it are not
  trusted either.

A result counts only if its stamp is still the current one: no hook ran between the
start of the round and its result. Evidence about a previous endpoint is discarded,
so a heal is never undone by it (docs/healer.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from agents.probe.datapath_check import Connection


@dataclass(frozen=True)
class Stamp:
    """What one liveness round checks: the connection on a route, in a path epoch."""

    epoch: int
    route: str
    connection: Connection


class Attribution:
    """The current stamp, advanced around every reconnect; see the module docstring."""

    def __init__(self, route: str, connection: Connection) -> None:
        self.current = Stamp(0, route, connection)

    def stamp(self) -> Stamp:
        """The stamp for a round starting now."""
        return self.current

    def moving(self) -> None:
        self.current = replace(self.current, epoch=self.current.epoch + 1)

    def moved(self, route: str, connection: Connection) -> None:
        self.current = Stamp(self.current.epoch + 1, route, connection)

    def stayed(self) -> None:
        self.moving()

    def counts(self, stamp: Stamp) -> bool:
        """Whether a result taken under `stamp` is about the current connection."""
        return stamp == self.current
