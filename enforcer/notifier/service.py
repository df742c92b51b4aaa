"""Every configured notifier of one process: receivers, consumers and Alertmanager re-sends.

`NotifierService(config, bus)` builds them (refusing, with every problem at
once, a webhook whose secret cannot be read), `run(stop)` runs them until
`stop` and closes their HTTP clients; `counters` feed `/metrics`
(`NotifierCollector`). Each notifier runs on its own: one whose receiver is
down never delays another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import httpx

from enforcer.notifier.alertmanager import AlertmanagerReceiver
from enforcer.notifier.consumer import NotifierConsumer
from enforcer.notifier.metrics import NotifierCollector, NotifierCounters
from enforcer.notifier.receiver import Receiver
from enforcer.notifier.stopping import Stopped, unless_stopped
from enforcer.notifier.webhook import WebhookReceiver
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.status import RoleCounters, publish_status
from pathwatch.runtime.supervise import start_supervised
from schemas.config import NotifierConfig, PathwatchConfig

log = logging.getLogger("pathwatch.notifier")

USER_AGENT = "pathwatch-notifier"


class NotifierSetupError(ValueError):
    """Notifiers that cannot start; `problems` says why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def webhook_secret(name: str, config: NotifierConfig) -> bytes:
    """The shared secret of webhook `name` (from `secret` or `secret-file`)."""
    if config.secret_file:
        try:
            secret = Path(config.secret_file).read_bytes().strip()
        except OSError as exc:
            raise NotifierSetupError(
                [f"notifiers.{name}.secret-file: cannot read {config.secret_file}: {exc.strerror}"]
            ) from None
    else:
        secret = (config.secret or "").encode()
    if not secret:
        raise NotifierSetupError([f"notifiers.{name}: the webhook secret is empty"])
    return secret


def _receiver(
    name: str, config: NotifierConfig, client: httpx.AsyncClient, counters: NotifierCounters
) -> Receiver:
    if config.kind == "alertmanager":
        receiver = AlertmanagerReceiver(name, config, client, counters.resends)
        counters.active = lambda: len(receiver.active)
        return receiver
    return WebhookReceiver(name, config, webhook_secret(name, config), client)


class NotifierService:
    """The notifiers of `config` (those named in `only`, when given) of one process
    (`instance`: its name in the role status, default the host name)."""

    def __init__(
        self,
        config: PathwatchConfig,
        bus: Bus,
        only: list[str] | None = None,
        instance: str | None = None,
    ) -> None:
        wanted = {name: kind for name, kind in config.notifiers.items() if not only or name in only}
        unknown = sorted(set(only or ()) - set(config.notifiers))
        problems = [f"no notifier named {name!r} in the config" for name in unknown]
        self.bus = bus
        self.role = RoleCounters("notifier", instance or socket.gethostname())
        self.counters: list[NotifierCounters] = []
        self.consumers: list[NotifierConsumer] = []
        self._clients: list[httpx.AsyncClient] = []
        for name, notifier in wanted.items():
            client = httpx.AsyncClient(
                timeout=notifier.timeout, headers={"User-Agent": USER_AGENT}, follow_redirects=False
            )
            counters = NotifierCounters(name, notifier.kind)
            try:
                receiver = _receiver(name, notifier, client, counters)
            except NotifierSetupError as exc:
                problems.extend(exc.problems)
                continue
            self._clients.append(client)
            self.counters.append(counters)
            self.consumers.append(
                NotifierConsumer(bus, name, receiver, notifier, counters, self.role.dropped)
            )
        if problems:
            raise NotifierSetupError(problems)

    def collector(self) -> NotifierCollector:
        return NotifierCollector(self.counters)

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Run every notifier, each under a supervisor, and publish the role status until
        `stop`; `ready` is set once every consumer is open."""
        readies = [asyncio.Event() for _ in self.consumers]
        tasks: list[asyncio.Task[None]] = []

        def supervised(name: str, work: Callable[[], Awaitable[None]]) -> None:
            tasks.append(start_supervised(name, work, stop, self.role.restarts))

        for consumer, opened in zip(self.consumers, readies, strict=True):
            supervised(f"notifier-{consumer.name}", partial(consumer.run, stop, opened))
            if isinstance(consumer.receiver, AlertmanagerReceiver):
                resends = partial(_resends_once_open, consumer.receiver, opened, stop)
                supervised(f"notifier-{consumer.name}-resends", resends)
            log.info("notifier %s (%s) started", consumer.name, consumer.receiver.kind)
        supervised("notifier-status", partial(publish_status, self.bus, self.role, stop))
        try:
            if ready is not None:
                with contextlib.suppress(Stopped):
                    await unless_stopped(_all_set(readies), stop)
                    ready.set()
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.close()

    async def close(self) -> None:
        """Close the HTTP clients (done by `run`; for a service that never ran)."""
        for client in self._clients:
            await client.aclose()


async def _all_set(events: list[asyncio.Event]) -> None:
    for event in events:
        await event.wait()


async def _resends_once_open(
    receiver: AlertmanagerReceiver, opened: asyncio.Event, stop: asyncio.Event
) -> None:
    """Re-send `receiver`'s active alarms once its consumer has restored them."""
    try:
        await unless_stopped(opened.wait(), stop)
    except Stopped:
        return
    await receiver.run_resends(stop)
