"""The datapath liveness loop: run the check on the live connection every interval.

Each round calls the check with an absolute `time.monotonic()` deadline
(`now + timeout`) on the connection as it is *now*, and reports the result
with the heal generation it was taken in, so a result about a previous
endpoint can be recognised as stale and dropped. With a namespace loop the
check runs inside the client's network namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from agents.healer.netns import NetnsLoop
from agents.healer.settings import LivenessSettings
from agents.probe.liveness import Connection, LivenessCheck

log = logging.getLogger("pathwatch.healer")


class LivenessLoop:
    """Runs `check` every `settings.interval` s until stopped; `report(generation, alive)`."""

    def __init__(
        self,
        check: LivenessCheck,
        settings: LivenessSettings,
        context: Callable[[], tuple[int, Connection]],
        report: Callable[[int, bool], None],
        netns_loop: NetnsLoop | None = None,
    ) -> None:
        self.check = check
        self.settings = settings
        self.context = context
        self.report = report
        self.netns_loop = netns_loop
        self.rounds = 0

    async def _one(self, deadline: float, connection: Connection) -> bool:
        try:
            if self.netns_loop is not None:
                return await self.netns_loop.submit(lambda: self.check(deadline, connection))
            return await self.check(deadline, connection)
        except Exception:
            log.exception("liveness check raised; counting it as failed")
            return False

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            generation, connection = self.context()
            alive = await self._one(started + self.settings.timeout, connection)
            self.rounds += 1
            self.report(generation, alive)
            pause = max(started + self.settings.interval - time.monotonic(), 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
