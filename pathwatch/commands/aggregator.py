"""`pathwatch aggregator` (one partition) and `pathwatch bench ingest` (implemented in
`pathwatch.bench.ingest`); `pathwatch history` lives in `pathwatch.commands.history`."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress

from aggregator.service import START_ONLY, run_aggregator
from pathwatch.app import app, bench_app, examples
from pathwatch.bench.ingest import report, run_bench
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
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configstore import DEFAULT_NAME
from pathwatch.runtime.listen import ListenError
from schemas import subjects
from schemas.names import subject_token

log = logging.getLogger("pathwatch")


@app.command(
    "aggregator",
    epilog=examples(
        "pathwatch aggregator -c pathwatch.yaml",
        "pathwatch aggregator -c pathwatch.yaml --partition 1 --partitions 4",
        "pathwatch aggregator -c pathwatch.yaml --partition 1 --partitions 4 --replica b",
        "pathwatch aggregator -c bootstrap.yaml --config-from nats",
    ),
)
def aggregator_command(
    config: Annotated[Path | None, typer.Option("-c", "--config", help="Config file.")] = None,
    partition: Annotated[int, typer.Option(help="This process's partition K (0..N-1).")] = 0,
    partitions: Annotated[int, typer.Option(help="Number of partitions N.")] = 1,
    replica: Annotated[
        str | None,
        typer.Option(
            help="This replica's name (default: the host name); run two or more per"
            " partition and each gets all of its measurements.",
        ),
    ] = None,
    nats: Annotated[
        str | None, typer.Option(help="NATS server URL(s), overrides nats.url.")
    ] = None,
    store: Annotated[
        str | None, typer.Option(help="SQLite history file (default store.path; '' for none).")
    ] = None,
    metrics: Annotated[
        str | None, typer.Option(help="Prometheus listen address (default metrics.listen).")
    ] = None,
    config_from: ConfigFromOption = None,
    config_name: ConfigNameOption = DEFAULT_NAME,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
    log_format: LogFormatOption = "text",
) -> None:
    """Fold measurements into windows for one partition; publish stats, history and metrics."""
    setup_logging(verbose, log_format)
    role_config = role_config_or_exit(config, config_from, config_name)
    if partitions < 1 or not 0 <= partition < partitions:
        err_console.print(f"[bold red]error:[/] --partition must be in 0..{partitions - 1}")
        raise typer.Exit(2)
    replica_name = subject_token(replica or socket.gethostname())
    options = bus_options_or_exit(role_config.nats, f"aggregator-{partition}-{replica_name}", nats)

    async def main(stop: asyncio.Event) -> None:
        bus = await Bus.connect(options, stop)
        try:
            await bus.try_ensure(
                streams=[subjects.STREAM_ALARMS], buckets=[subjects.KV_PATHS, subjects.KV_LEASES]
            )
            source = await role_config.open(bus, stop)
            live = source.live("aggregator", START_ONLY)
            cfg = live.config
            store_path = cfg.store.path if store is None else store
            metrics_listen = cfg.metrics.listen if metrics is None else metrics
            async with following(source, stop):
                await run_aggregator(
                    cfg,
                    bus,
                    stop=stop,
                    partition=partition,
                    partitions=partitions,
                    replica=replica_name,
                    store_path=store_path or None,
                    metrics_listen=metrics_listen or None,
                    live=live,
                )
        except ListenError as exc:
            log.error("%s", exc)
            raise typer.Exit(1) from None
        finally:
            await bus.close()

    run_until_signal(main)


@bench_app.command(
    "ingest",
    epilog=examples("pathwatch bench ingest", "pathwatch bench ingest --batches 3000 --routes 100"),
)
def bench_ingest(
    batches: Annotated[int, typer.Option(help="Batches of 100 per phase.")] = 30_000,
    routes: Annotated[int, typer.Option(help="Routes the batches are spread over.")] = 1000,
    memory_routes: Annotated[int, typer.Option(help="Routes for the memory / close phase.")] = (
        10_000
    ),
) -> None:
    """Aggregator ingest rate vs the decode-only ceiling; memory and window-close time."""
    if batches < 100 or routes < 1 or memory_routes < 1:
        raise typer.BadParameter("need at least 100 batches, 1 route and 1 memory route")
    with Progress(console=err_console, transient=True) as progress:
        result = asyncio.run(run_bench(batches, routes, memory_routes, progress))
    for line in report(result):
        typer.echo(line)
