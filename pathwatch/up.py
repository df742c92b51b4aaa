"""`pathwatch up`: every part in one process, each on its own NATS connection.

Starts an embedded nats-server unless `nats.url` names servers (then it first takes
the state directory's lock, refusing to start beside another `up` on the same store,
runs the server with the credentials kept there, and writes `up.json` so other
commands find the server and its credentials), sets up the JetStream streams
and buckets, then runs the agent (every route), the aggregator, the enforcer, the
REST API and (when the config has `notifiers:`) the notifier as asyncio tasks until
`stop` is set or one of them fails. Stopping is
bounded: parts get PART_GRACE_S, then are cancelled; connections and the server are
closed within the 2 s every process promises. Every part follows the config source
(`pathwatch up` reads its file again on SIGHUP): each applies a new config, or
refuses it and keeps its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec.structs

from agents.agent import run_agent
from aggregator.service import START_ONLY as AGGREGATOR_START_ONLY
from aggregator.service import run_aggregator
from enforcer.api import START_ONLY as API_START_ONLY
from enforcer.api import run_api
from enforcer.notifier.follow import FollowingNotifiers
from enforcer.notifier.service import NotifierSetupError
from enforcer.service import START_ONLY as ENFORCER_START_ONLY
from enforcer.service import run_enforcer
from pathwatch.grafana.annotations import run_configured_annotator
from pathwatch.rolecli import bus_options
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configfile import LoadedConfig
from pathwatch.runtime.configsource import ConfigSource, Revision
from pathwatch.runtime.embedded import EmbeddedNats, NatsServerMissing
from pathwatch.runtime.listen import ListenError
from pathwatch.statedir import (
    AUTH_NAME,
    NatsAuth,
    StateDirLock,
    UpEndpoint,
    embedded_auth,
    remove_endpoint,
    state_dir,
    write_endpoint,
)
from schemas.config import PathwatchConfig

log = logging.getLogger("pathwatch.up")

#: How long parts get to finish after stop before they are cancelled.
PART_GRACE_S = 0.9
#: How long the NATS connections get to drain and close, all at once.
BUS_CLOSE_S = 0.25
#: How long the embedded nats-server gets to exit after SIGTERM before SIGKILL.
SERVER_STOP_S = 0.5

Part = tuple[str, Coroutine[Any, Any, object]]


class ComponentFailed(RuntimeError):
    """A part of the all-in-one process could not start or ended; the message says
    which and why."""


def _prepare_store(path: str) -> Path:
    """Create the store's directory; return its absolute path."""
    store = Path(path)
    store.parent.mkdir(parents=True, exist_ok=True)
    return store.resolve()


async def run_all(
    loaded: LoadedConfig,
    stop: asyncio.Event,
    node: str | None = None,
    source: ConfigSource | None = None,
) -> None:
    """Run everything until `stop` is set; raise ComponentFailed if a part cannot start
    or ends, and StateDirBusy if another `up` holds the state directory. Every part
    follows `source` (its first revision is `loaded`; None: nothing changes it)."""
    config = loaded.config
    source = source or ConfigSource(Revision(loaded))
    async with contextlib.AsyncExitStack() as stack:
        url, auth = _start_nats(config, stack)
        log.info("store: SQLite %s", _prepare_store(config.store.path))
        log.info(
            "API: http://%s  metrics: http://%s/metrics", config.api.listen, config.metrics.listen
        )
        log.info("config: %s (%d routes)", loaded.source, len(config.routes()))
        buses: list[Bus] = []
        stack.push_async_callback(_close_all, buses)

        async def connect(role: str) -> Bus:
            options = bus_options(config.nats, f"pathwatch-{role}", url)
            if auth is not None:
                nats = msgspec.structs.replace(options.nats, user=auth.user, password=auth.password)
                options = dataclasses.replace(options, nats=nats)
            bus = await Bus.connect(options, stop)
            buses.append(bus)
            return bus

        await (await connect("setup")).ensure()
        parts = await _parts(source, connect, stop, node)
        task = asyncio.create_task(source.run(stop), name="config-source")
        try:
            await _run_parts(parts, stop)
        finally:
            task.cancel()


def _start_nats(
    config: PathwatchConfig, stack: contextlib.AsyncExitStack
) -> tuple[str, NatsAuth | None]:
    """The URL of NATS: `nats.url`, or an embedded nats-server started here (with the
    state directory locked and `up.json` written, both undone by `stack`) and the
    credentials it requires (kept in the state directory)."""
    if config.nats.url != "embedded":
        log.info("NATS: %s", config.nats.url)
        return config.nats.url, None
    directory = state_dir(config.nats)
    stack.enter_context(StateDirLock(directory))
    auth, server_config = embedded_auth(directory)
    embedded = EmbeddedNats(store_dir=config.nats.store_dir, config_file=server_config)
    try:
        embedded.start()  # from this thread: the server dies with it (PDEATHSIG)
    except (NatsServerMissing, RuntimeError, OSError) as exc:
        raise ComponentFailed(f"embedded nats-server: {exc}") from None
    stack.callback(_stop_server, embedded)
    log.info(
        "NATS: embedded nats-server on %s (store %s, credentials %s)",
        embedded.url,
        embedded.store_dir,
        directory / AUTH_NAME,
    )
    endpoint = UpEndpoint(
        pid=os.getpid(), nats_url=embedded.url, nats_auth=str((directory / AUTH_NAME).resolve())
    )
    write_endpoint(directory, endpoint)
    stack.callback(remove_endpoint, directory)
    return embedded.url, auth


def _stop_server(embedded: EmbeddedNats) -> None:
    embedded.stop(timeout=SERVER_STOP_S)
    log.info("embedded nats-server stopped")


#: Read only when `up` starts without notifiers.
NOTIFIERS_START_ONLY = ("notifiers",)


async def _notifiers(
    source: ConfigSource, connect: Callable[[str], Awaitable[Bus]]
) -> FollowingNotifiers | None:
    """The notifiers of the config (none at start: None), following `source`, their
    counters on the shared /metrics. Without notifiers at start, a revision that adds
    some is logged as waiting for the next start of `up` (the notifier part is not
    there to take them)."""
    config = source.current.config
    if not config.notifiers:
        source.live("notifier", NOTIFIERS_START_ONLY)
        return None
    try:
        bus = await connect("notifier")
        notifiers = FollowingNotifiers(bus, source.live("notifier"), instance="local")
    except NotifierSetupError as exc:
        raise ComponentFailed(f"notifier: {exc}") from None
    log.info("notifiers: %s", ", ".join(sorted(config.notifiers)))
    return notifiers


async def _parts(
    source: ConfigSource,
    connect: Callable[[str], Awaitable[Bus]],
    stop: asyncio.Event,
    node: str | None,
) -> list[Part]:
    """Each part's coroutine on its own connection (not started yet), each following
    `source` (the Grafana annotator keeps the first config; notifiers run when the first
    config has some)."""
    config = source.current.config
    notifiers = await _notifiers(source, connect)
    parts: list[Part] = [
        (
            "api",
            run_api(
                config, await connect("api"), stop=stop, live=source.live("api", API_START_ONLY)
            ),
        ),
        (
            "enforcer",
            run_enforcer(
                config,
                await connect("enforcer"),
                stop=stop,
                instance="local",
                store_path=config.store.path,
                live=source.live("enforcer", ENFORCER_START_ONLY),
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
                replica="local",
                metrics_collectors=[notifiers.collector()] if notifiers else [],
                live=source.live("aggregator", AGGREGATOR_START_ONLY),
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
                live=source.live("agent"),
            ),
        ),
    ]
    if notifiers is not None:
        parts.append(("notifier", notifiers.run(stop)))
    if config.grafana.annotate_alarms and config.grafana.url:
        annotator = run_configured_annotator(config, await connect("annotator"), stop=stop)
        parts.append(("grafana-annotations", annotator))
    return parts


async def _run_parts(parts: list[Part], stop: asyncio.Event) -> None:
    """Run the parts until `stop` or until one ends; then stop them all (bounded)."""
    tasks = {asyncio.create_task(coroutine, name=name): name for name, coroutine in parts}
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        requested = stop.is_set()
        failed = [t for t in tasks if t.done() and not (requested and _ended_cleanly(t))]
        stop.set()
        await _stop_parts(tasks)
    if failed:
        raise _failure(tasks[failed[0]], failed[0])
    for task, name in tasks.items():
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("%s failed while stopping", name, exc_info=task.exception())


def _ended_cleanly(task: asyncio.Task[object]) -> bool:
    return not task.cancelled() and task.exception() is None


async def _stop_parts(tasks: dict[asyncio.Task[object], str]) -> None:
    """Give the parts PART_GRACE_S to finish after stop, then cancel the rest."""
    _, pending = await asyncio.wait(tasks, timeout=PART_GRACE_S)
    for task in pending:
        log.warning("%s did not stop within %.1f s; cancelling", tasks[task], PART_GRACE_S)
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=0.2)


def _failure(name: str, task: asyncio.Task[object]) -> ComponentFailed:
    """ComponentFailed naming the part that ended on its own and why."""
    if task.cancelled():
        return ComponentFailed(f"{name} was cancelled")
    error = task.exception()
    if error is None:
        return ComponentFailed(f"{name} stopped unexpectedly")
    if isinstance(error, ListenError):
        return ComponentFailed(f"{name}: {error}")
    log.error("%s failed", name, exc_info=error)
    return ComponentFailed(f"{name} failed: {error!r}")


async def _close_all(buses: list[Bus]) -> None:
    """Close every connection at once, within BUS_CLOSE_S."""
    if not buses:
        return
    closing = [asyncio.create_task(bus.close()) for bus in buses]
    _, pending = await asyncio.wait(closing, timeout=BUS_CLOSE_S)
    for task in pending:
        task.cancel()
    await asyncio.gather(*closing, return_exceptions=True)
