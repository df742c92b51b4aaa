"""The datapath liveness loop: run the check on the live connection every interval.

Each round takes the current `Stamp` (route, connection, path epoch; see
`agents.healer.attribution`) when it starts, calls the check on that connection
with an absolute `time.monotonic()` deadline (`now + timeout`), and reports the
result with the stamp, so a result about a previous endpoint is recognised and
dropped. `restart()` (after a move) abandons the round in flight, whose result
would be stale anyway, and starts one on the new connection at once. With a
namespace loop the check runs inside the client's network namespace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from agents.healer.attribution import Stamp
from agents.healer.netns import NetnsLoop
from agents.healer.settings import LivenessSettings
from agents.probe.datapath_check import Connection, LivenessCheck
from pathwatch.runtime.aio import wait_any

log = logging.getLogger("pathwatch.healer")


class LivenessLoop:
    """Runs `check` every `settings.interval` s until stopped; `report(stamp, alive)`."""

    def __init__(
        self,
        check: LivenessCheck,
        settings: LivenessSettings,
        stamp: Callable[[], Stamp],
        report: Callable[[Stamp, bool], None],
        netns_loop: NetnsLoop | None = None,
    ) -> None:
        self.check = check
        self.settings = settings
        self.stamp = stamp
        self.report = report
        self.netns_loop = netns_loop
        self.rounds = 0
        self.abandoned = 0
        self._restart = asyncio.Event()

    def restart(self) -> None:
        """The connection changed: abandon the round in flight and check the new one now."""
        self._restart.set()

    async def _one(self, deadline: float, connection: Connection) -> bool:
        try:
            if self.netns_loop is not None:
                return await self.netns_loop.submit(lambda: self.check(deadline, connection))
            return await self.check(deadline, connection)
        except Exception:
            log.exception("liveness check raised; counting it as failed")
            return False

    async def _round(self, started: float, stamp: Stamp) -> bool | None:
        """The check's result, or None when `restart()` abandoned it."""
        checking = asyncio.create_task(self._one(started + self.settings.timeout, stamp.connection))
        restarted = asyncio.create_task(self._restart.wait())
        try:
            await asyncio.wait({checking, restarted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            restarted.cancel()
            if not checking.done():
                checking.cancel()
                await asyncio.gather(checking, return_exceptions=True)
        return checking.result() if not checking.cancelled() else None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            self._restart.clear()
            stamp = self.stamp()
            alive = await self._round(started, stamp)
            if alive is None:
                self.abandoned += 1
                continue
            self.rounds += 1
            self.report(stamp, alive)
            pause = max(started + self.settings.interval - time.monotonic(), 0.0)
            await wait_any((stop, self._restart), pause)
