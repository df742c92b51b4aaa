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
    load_or_exit,
    run_until_signal,
    setup_logging,
)
from schemas import subjects

if TYPE_CHECKING:
    from enforcer.notifier.service import NotifierService
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
    ),
)
def notifier_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="Config file (YAML or TOML).")],
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
    """
    from enforcer.notifier.service import NotifierService, NotifierSetupError
    from pathwatch.runtime.bus import Bus
    from pathwatch.runtime.listen import parse_listen

    setup_logging(verbose, log_format)
    loaded = load_or_exit(config)
    if not loaded.config.notifiers:
        _fail(f"{loaded.source} has no notifiers (the `notifiers:` section, docs/notifier.md)")
    if metrics_listen:
        try:
            parse_listen(metrics_listen)
        except ValueError as exc:
            _fail(f"--metrics-listen: {exc}")
    options = bus_options_or_exit(loaded.config.nats, "notifier", nats)

    async def main(stop: asyncio.Event) -> None:
        bus = await Bus.connect(options, stop)
        try:
            if dead_letters:
                await _print_dead_letters(bus, only)
                return
            try:
                service = NotifierService(loaded.config, bus, only)
            except NotifierSetupError as exc:
                _fail(*exc.problems)
            # only what it reads and writes: its user may look up nothing else
            await bus.try_ensure(
                streams=[subjects.STREAM_ALARMS, subjects.STREAM_DEAD_LETTERS], buckets=[]
            )
            server = _serve_metrics(service, metrics_listen)
            try:
                await service.run(stop)
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


def _serve_metrics(service: NotifierService, listen: str) -> MetricsHttpServer | None:
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
