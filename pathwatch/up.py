"""`pathwatch up`: every part in one process, each on its own NATS connection.

Starts an embedded nats-server unless `nats.url` names servers, sets up the
JetStream streams and buckets, then runs the agent (every route), the
aggregator, the enforcer, the REST API and (when the config has `notifiers:`)
the notifier as asyncio tasks until `stop` is set or one of them fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from agents.agent import run_agent
from aggregator.service import run_aggregator
from enforcer.api import run_api
from enforcer.notifier.service import NotifierService, NotifierSetupError
from enforcer.service import run_enforcer
from pathwatch.bus import Bus
from pathwatch.configfile import LoadedConfig
from pathwatch.embedded import EmbeddedNats
from pathwatch.grafana.annotations import run_configured_annotator
from pathwatch.runtime import bus_options
from schemas.config import PathwatchConfig

log = logging.getLogger("pathwatch.up")

#: How long parts get to finish after stop before they are cancelled.
STOP_GRACE_S = 1.5


class ComponentFailed(RuntimeError):
    """A part of the all-in-one process ended with an error."""


def _prepare_store(path: str) -> Path:
    """Create the store's directory; return its absolute path."""
    store = Path(path)
    store.parent.mkdir(parents=True, exist_ok=True)
    return store.resolve()


async def _notifiers(
    config: PathwatchConfig, connect: Callable[[str], Awaitable[Bus]]
) -> NotifierService | None:
    """The notifiers of the config (none: None), their counters on the shared /metrics."""
    if not config.notifiers:
        return None
    try:
        service = NotifierService(config, await connect("notifier"), instance="local")
    except NotifierSetupError as exc:
        raise ComponentFailed(f"notifier: {exc}") from None
    log.info("notifiers: %s", ", ".join(sorted(config.notifiers)))
    return service


async def run_all(loaded: LoadedConfig, stop: asyncio.Event, node: str | None = None) -> None:
    """Run everything until `stop` is set; raise ComponentFailed if a part dies."""
    config = loaded.config
    embedded: EmbeddedNats | None = None
    buses: list[Bus] = []
    tasks: dict[asyncio.Task[object], str] = {}
    try:
        if config.nats.url == "embedded":
            embedded = EmbeddedNats(store_dir=config.nats.store_dir)
            embedded.start()  # from this thread: the server dies with it (PDEATHSIG)
            url = embedded.url
            log.info("NATS: embedded nats-server on %s (store %s)", url, embedded.store_dir)
        else:
            url = config.nats.url
            log.info("NATS: %s", url)
        log.info("store: SQLite %s", _prepare_store(config.store.path))
        log.info(
            "API: http://%s  metrics: http://%s/metrics", config.api.listen, config.metrics.listen
        )
        log.info("config: %s (%d routes)", loaded.source, len(config.routes()))

        async def connect(role: str) -> Bus:
            bus = await Bus.connect(bus_options(config.nats, f"pathwatch-{role}", url))
            buses.append(bus)
            return bus

        setup_bus = await connect("setup")
        await setup_bus.ensure()
        notifiers = await _notifiers(config, connect)

        parts: list[tuple[str, Coroutine[Any, Any, object]]] = [
            ("api", run_api(config, await connect("api"), stop=stop)),
            (
                "enforcer",
                run_enforcer(
                    config,
                    await connect("enforcer"),
                    stop=stop,
                    instance="local",
                    store_path=config.store.path,
                ),
            ),
            (
                "aggregator",
                run_aggregator(
                    config,
                    await connect("aggregator"),
                    stop=stop,
                    store_path=config.store.path,
                    metrics_listen=config.metrics.listen,
                    metrics_collectors=[notifiers.collector()] if notifiers else [],
                ),
            ),
            (
                "agent",
                run_agent(
                    config,
                    await connect("agent"),
                    stop=stop,
                    agent_name="local",
                    node=node,
                    config_hash=loaded.digest,
                ),
            ),
        ]
        if notifiers is not None:
            parts.append(("notifier", notifiers.run(stop)))
        if config.grafana.annotate_alarms and config.grafana.url:
            parts.append(
                (
                    "grafana-annotations",
                    run_configured_annotator(config, await connect("annotator"), stop=stop),
                )
            )
        for name, coroutine in parts:
            tasks[asyncio.create_task(coroutine, name=name)] = name
        stop_waiter = asyncio.create_task(stop.wait())
        await asyncio.wait([*tasks, stop_waiter], return_when=asyncio.FIRST_COMPLETED)
        stop_waiter.cancel()
        ended = [task for task in tasks if task.done()]
        stop.set()
        for task in ended:
            error = task.exception()
            if error is not None:
                raise ComponentFailed(f"{tasks[task]} failed: {error!r}") from error
        if ended:
            raise ComponentFailed(f"{tasks[ended[0]]} stopped unexpectedly")
    finally:
        stop.set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
            for task in pending:
                log.warning("%s did not stop within %.1f s; cancelling", tasks[task], STOP_GRACE_S)
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for bus in buses:
            try:
                await asyncio.wait_for(bus.close(), timeout=1.0)
            except Exception:
                log.debug("closing a bus failed", exc_info=True)
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
            log.info("embedded nats-server stopped")
