"""Notifiers that follow the config: a new revision's `notifiers:` applied without a restart.

`FollowingNotifiers` runs one `NotifierService` at a time. A revision that changes the
`notifiers:` section is applied by building the new
service first, so a revision it cannot build is refused (the role keeps the running
notifiers, `config:cannot-apply` counted) and a good one replaces the running service
when its deliveries in flight have ended. Each notifier reads the alarm stream through
its durable consumer, named after the notifier, so a notifier kept across revisions
goes on from where it was: nothing is lost or sent twice by a change. A revision that
changes nothing of the notifiers changes nothing here. The counters of `/metrics` are
those of the running service (they start again from zero after a change, which
Prometheus' rate() treats as a counter reset).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from enforcer.notifier.service import NotifierService
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configsource import LiveConfig
from schemas.config import PathwatchConfig

log = logging.getLogger("pathwatch.notifier")


class FollowingNotifiers:
    """The notifiers of `live`'s config (those in `only`, when given), rebuilt when a
    revision changes them."""

    def __init__(
        self, bus: Bus, live: LiveConfig, only: list[str] | None = None, instance: str | None = None
    ) -> None:
        self.bus = bus
        self.live = live
        self.only = only
        self.instance = instance
        #: the running service (raises NotifierSetupError when the first config is bad)
        self.service = self._build(live.config)
        self._next: NotifierService | None = None
        self._restart = asyncio.Event()
        live.on_change(self.apply)

    def _build(self, config: PathwatchConfig) -> NotifierService:
        service = NotifierService(config, self.bus, self.only, self.instance)
        service.role.live = self.live
        return service

    async def apply(self, config: PathwatchConfig) -> None:
        """Take `config`: rebuild when its notifiers differ (raises to refuse it)."""
        if config.notifiers == self.live.config.notifiers:
            return
        built = self._build(config)  # NotifierSetupError refuses the revision
        if self._next is not None:
            await self._next.close()
        self._next = built
        self._restart.set()
        log.info("notifiers: %s (from the new revision)", ", ".join(sorted(config.notifiers)))

    def collector(self) -> Collector:
        """`/metrics` of whichever service is running."""
        return _CurrentCollector(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Run the current service until `stop`, swapping it when a revision asks."""
        while not stop.is_set():
            self._restart.clear()
            relay = asyncio.create_task(_relay(stop, self._restart))
            try:
                await self.service.run(self._restart)
            finally:
                relay.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await relay
            if self._next is not None and not stop.is_set():
                self.service, self._next = self._next, None
        if self._next is not None:
            await self._next.close()


async def _relay(stop: asyncio.Event, restart: asyncio.Event) -> None:
    """Set `restart` once `stop` is set (the running service stops on either)."""
    await stop.wait()
    restart.set()


class _CurrentCollector(Collector):
    def __init__(self, following: FollowingNotifiers) -> None:
        self.following = following

    def collect(self) -> Iterator[Metric]:
        yield from self.following.service.collector().collect()
