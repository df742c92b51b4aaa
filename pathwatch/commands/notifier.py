"""`pathwatch notifier`: push alarms to Alertmanager and webhooks (docs/notifier.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from pathwatch.app import app, examples
from pathwatch.rolecli import (
    LogFormatOption,
    bus_options_or_exit,
    err_console,
    run_until_signal,
    setup_logging,
)
from pathwatch.roleconfig import (
    ConfigFromOption,
    ConfigNameOption,
    following,
    role_config_or_exit,
)
from pathwatch.runtime.configstore import DEFAULT_NAME
from schemas import subjects
from schemas.config import PathwatchConfig

if TYPE_CHECKING:
    from enforcer.notifier.follow import FollowingNotifiers
    from pathwatch.runtime.bus import Bus
    from pathwatch.runtime.metrics_http import MetricsHttpServer

#: Where the notifier serves /metrics unless told otherwise.
DEFAULT_METRICS_LISTEN = "127.0.0.1:9642"


@app.command(
    "notifier",
    epilog=examples(
        "pathwatch notifier -c pathwatch.yaml",
        "pathwatch notifier -c pathwatch.yaml --only ops-alertmanager --metrics-listen ''",
        "pathwatch notifier -c pathwatch.yaml --dead-letters",
        "pathwatch notifier -c bootstrap.yaml --config-from nats",
    ),
)
def notifier_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="Config file (YAML or TOML).")],
    config_from: ConfigFromOption = None,
    config_name: ConfigNameOption = DEFAULT_NAME,
    nats: Annotated[
        str | None, typer.Option("--nats", help="NATS server URL(s), overriding nats.url.")
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Run only this notifier of the config (repeatable)."),
    ] = None,
    metrics_listen: Annotated[
        str,
        typer.Option("--metrics-listen", help="Serve /metrics on HOST:PORT ('' for none)."),
    ] = DEFAULT_METRICS_LISTEN,
    dead_letters: Annotated[
        bool,
        typer.Option("--dead-letters", help="List the dead letters (of --only) and exit."),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    log_format: LogFormatOption = "text",
) -> None:
    """Push raised and cleared alarms to Alertmanager and webhooks, at least once.

    Each notifier of the config's `notifiers:` section reads the alarm stream through
    its own durable consumer, so a restart or a receiver that is down loses nothing.
    A new config revision (SIGHUP for a file, KV pathwatch-config with --config-from
    nats) that changes `notifiers:` is applied without a restart.
    """
    from enforcer.notifier.follow import FollowingNotifiers
    from enforcer.notifier.service import NotifierSetupError
    from pathwatch.runtime.bus import Bus
    from pathwatch.runtime.listen import parse_listen

    setup_logging(verbose, log_format)
    role_config = role_config_or_exit(config, config_from, config_name)

    def has_notifiers(config: PathwatchConfig) -> None:
        if not config.notifiers:
            kv = f"config {config_name!r} in KV pathwatch-config"
            where = kv if role_config.from_kv else role_config.loaded.source
            _fail(f"{where} has no notifiers (the `notifiers:` section, docs/notifier.md)")

    if not dead_letters:
        role_config.precheck(has_notifiers)
    if metrics_listen:
        try:
            parse_listen(metrics_listen)
        except ValueError as exc:
            _fail(f"--metrics-listen: {exc}")
    options = bus_options_or_exit(role_config.nats, "notifier", nats)

    async def main(stop: asyncio.Event) -> None:
        bus = await Bus.connect(options, stop)
        try:
            if dead_letters:
                await _print_dead_letters(bus, only)
                return
            source = await role_config.open(bus, stop, has_notifiers)
            try:
                notifiers = FollowingNotifiers(bus, source.live("notifier"), only)
            except NotifierSetupError as exc:
                _fail(*exc.problems)
            # only what it reads and writes: its user may look up nothing else
            await bus.try_ensure(
                streams=[subjects.STREAM_ALARMS, subjects.STREAM_DEAD_LETTERS], buckets=[]
            )
            server = _serve_metrics(notifiers, metrics_listen)
            try:
                async with following(source, stop):
                    await notifiers.run(stop)
            finally:
                if server is not None:
                    server.stop()
        finally:
            await bus.close()

    run_until_signal(main)


def _fail(*problems: str) -> NoReturn:
    for problem in problems:
        err_console.print(f"[bold red]error:[/] {problem}", highlight=False)
    raise typer.Exit(2)


def _serve_metrics(service: FollowingNotifiers, listen: str) -> MetricsHttpServer | None:
    """`/metrics` of the notifiers on `listen` ('' for none); exit 2 if it cannot bind."""
    from prometheus_client import CollectorRegistry

    from pathwatch.runtime.listen import ListenError
    from pathwatch.runtime.metrics_http import MetricsHttpServer

    if not listen:
        return None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(service.collector())
    try:
        return MetricsHttpServer(registry).start(listen, "--metrics-listen")
    except ListenError as exc:
        _fail(str(exc))


async def _print_dead_letters(bus: Bus, only: list[str] | None) -> None:
    """One JSON object per dead letter, oldest first."""
    from enforcer.notifier.deadletter import read_dead_letters
    from schemas.codec import encode

    names: list[str | None] = list(only) if only else [None]
    for name in names:
        for letter in await read_dead_letters(bus, name, limit=1000):
            print(encode(letter).decode(), flush=True)
