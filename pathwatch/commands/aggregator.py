"""`pathwatch aggregator` (one partition), `pathwatch history` (the SQLite store) and
`pathwatch bench ingest` (implemented in `pathwatch.bench.ingest`)."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from aggregator.history import HistoryRow, HistoryStore
from aggregator.service import run_aggregator
from pathwatch.app import app, bench_app
from pathwatch.bench.ingest import report, run_bench
from pathwatch.bus import Bus
from pathwatch.listen import ListenError
from pathwatch.runtime import (
    LogFormatOption,
    bus_options_or_exit,
    err_console,
    load_or_exit,
    run_until_signal,
    setup_logging,
)

log = logging.getLogger("pathwatch")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str) -> float:
    """`90`, `90s`, `5m`, `1h`, `2d`, `1w` to seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a duration like 30s, 5m, 1h or 2d")
    return float(match.group(1)) * _UNITS[match.group(2)]


@app.command("aggregator")
def aggregator_command(
    config: Annotated[Path | None, typer.Option("-c", "--config", help="Config file.")] = None,
    partition: Annotated[int, typer.Option(help="This process's partition K (0..N-1).")] = 0,
    partitions: Annotated[int, typer.Option(help="Number of partitions N.")] = 1,
    nats: Annotated[
        str | None, typer.Option(help="NATS server URL(s), overrides nats.url.")
    ] = None,
    store: Annotated[
        str | None, typer.Option(help="SQLite history file (default store.path; '' for none).")
    ] = None,
    metrics: Annotated[
        str | None, typer.Option(help="Prometheus listen address (default metrics.listen).")
    ] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
    log_format: LogFormatOption = "text",
) -> None:
    """Fold measurements into windows for one partition; publish stats, history and metrics."""
    setup_logging(verbose, log_format)
    loaded = load_or_exit(config)
    cfg = loaded.config
    if partitions < 1 or not 0 <= partition < partitions:
        err_console.print(f"[bold red]error:[/] --partition must be in 0..{partitions - 1}")
        raise typer.Exit(2)
    options = bus_options_or_exit(cfg.nats, f"aggregator-{partition}", nats)
    store_path = cfg.store.path if store is None else store
    metrics_listen = cfg.metrics.listen if metrics is None else metrics

    async def main(stop: asyncio.Event) -> None:
        bus = await Bus.connect(options, stop)
        try:
            await bus.try_ensure()
            await run_aggregator(
                cfg,
                bus,
                stop=stop,
                partition=partition,
                partitions=partitions,
                store_path=store_path or None,
                metrics_listen=metrics_listen or None,
            )
        except ListenError as exc:
            log.error("%s", exc)
            raise typer.Exit(1) from None
        finally:
            await bus.close()

    run_until_signal(main)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _lane(row: HistoryRow) -> str:
    name = f"{row.protocol}/{row.traffic_class} {row.source}"
    if row.probe or row.destination:
        name += f" {row.probe or '*'}@{row.destination or '*'}"
    return name


def history_table(rows: list[HistoryRow], title: str) -> Table:
    table = Table(title=title)
    for column in ("window", "lane", "count", "err %", "loss %", "min", "mean", "median", "p90"):
        table.add_column(column, justify="left" if column in ("window", "lane") else "right")
    for column in ("max", "jitter", "MOS"):
        table.add_column(column, justify="right")
    for row in rows:
        start = datetime.fromtimestamp(row.window_start, UTC).strftime("%m-%d %H:%M:%S")
        table.add_row(
            start,
            _lane(row),
            str(row.count),
            _fmt(row.error_pct, 1),
            _fmt(row.loss_pct, 1),
            _fmt(row.latency_min_ms),
            _fmt(row.latency_mean_ms),
            _fmt(row.latency_median_ms),
            _fmt(row.latency_p90_ms),
            _fmt(row.latency_max_ms),
            _fmt(row.jitter_ms),
            _fmt(row.mos),
        )
    return table


@app.command("history")
def history_command(
    service: Annotated[str, typer.Option(help="Service name.")],
    route: Annotated[str, typer.Option(help="Service-route name.")],
    since: Annotated[str, typer.Option(help="Look-back: 30s, 5m, 1h, 2d.")] = "1h",
    json_output: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    config: Annotated[Path | None, typer.Option("-c", "--config", help="Config file.")] = None,
    store: Annotated[Path | None, typer.Option(help="SQLite file (instead of -c).")] = None,
) -> None:
    """Window history of a route from the aggregator's SQLite store."""
    look_back = parse_duration(since)
    loaded = load_or_exit(config) if store is None or config is not None else None
    path = store if store is not None else Path(loaded.config.store.path) if loaded else None
    if path is None or not path.exists():
        err_console.print(f"[bold red]error:[/] no history store at {path}")
        raise typer.Exit(1)
    retention = loaded.config.store.retention if loaded is not None else None

    async def query() -> list[HistoryRow]:
        history = await HistoryStore(path, retention).open()
        try:
            return await history.query(service, route, time.time() - look_back)
        finally:
            await history.close()

    rows = asyncio.run(query())
    if json_output:
        sys.stdout.write(msgspec.json.encode(rows).decode() + "\n")
        return
    Console().print(history_table(rows, f"{service} / {route}, last {since} ({len(rows)} rows)"))


@bench_app.command("ingest")
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
