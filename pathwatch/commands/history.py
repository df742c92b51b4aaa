"""`pathwatch history`: a route's windows from the aggregator's SQLite store, one table per
lane (narrow enough for an 80-column terminal; `--wide` adds median and jitter)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich import box
from rich.table import Table

from aggregator.history import HistoryRow, HistoryStore
from pathwatch.app import app, examples
from pathwatch.cliduration import duration_option
from pathwatch.commands.show import console
from pathwatch.rolecli import err_console, load_or_exit
from schemas.config import RetentionConfig


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def lane_name(row: HistoryRow) -> str:
    """`tcp/high probe api@127.0.0.1`: protocol / class, source, and the target if any."""
    name = f"{row.protocol}/{row.traffic_class} {row.source}"
    if row.probe or row.destination:
        name += f" {row.probe or '*'}@{row.destination or '*'}"
    return name


def _columns(wide: bool) -> list[tuple[str, str]]:
    """(header, HistoryRow field) of the latency columns; median and jitter only when wide."""
    columns = [("Min", "latency_min_ms"), ("Mean", "latency_mean_ms")]
    if wide:
        columns.append(("Median", "latency_median_ms"))
    columns += [("P90", "latency_p90_ms"), ("Max", "latency_max_ms")]
    if wide:
        columns.append(("Jitter", "jitter_ms"))
    return columns


def lane_table(lane: str, rows: list[HistoryRow], wide: bool = False) -> Table:
    """One lane's windows: start (UTC), count, error and loss %, latencies (ms), MOS."""
    table = Table(
        title=lane, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False
    )
    table.add_column("Window (UTC)")
    latency = _columns(wide)
    for header in ("N", "Err%", "Loss%", *(name for name, _ in latency), "MOS"):
        table.add_column(header, justify="right")
    for row in rows:
        table.add_row(
            datetime.fromtimestamp(row.window_start, UTC).strftime("%m-%d %H:%M:%S"),
            str(row.count),
            _fmt(row.error_pct, 1),
            _fmt(row.loss_pct, 1),
            *(_fmt(getattr(row, field)) for _, field in latency),
            _fmt(row.mos),
        )
    return table


def by_lane(rows: Iterable[HistoryRow]) -> dict[str, list[HistoryRow]]:
    """Rows grouped by lane, lanes in name order, each lane's rows in time order."""
    lanes: dict[str, list[HistoryRow]] = {}
    for row in sorted(rows, key=lambda r: (lane_name(r), r.window_start)):
        lanes.setdefault(lane_name(row), []).append(row)
    return lanes


def _store_path(config: Path | None, store: Path | None) -> tuple[Path, RetentionConfig | None]:
    """The SQLite file and its retention (None without a config); exits 1 when missing."""
    loaded = load_or_exit(config) if store is None or config is not None else None
    path = store if store is not None else Path(loaded.config.store.path) if loaded else None
    if path is None or not path.exists():
        err_console.print(f"[bold red]error:[/] no history store at {path}")
        raise typer.Exit(1)
    return path, loaded.config.store.retention if loaded is not None else None


@app.command(
    "history",
    epilog=examples(
        "pathwatch history --service loopback --route lo-primary --since 5m",
        "pathwatch history --service loopback --route lo-primary --protocol tcp --class high",
        "pathwatch history --service web --route r1 --store pathwatch.db --since 2d --json",
    ),
)
def history_command(
    service: Annotated[str, typer.Option(help="Service name.")],
    route: Annotated[str, typer.Option(help="Service-route name.")],
    since: Annotated[str, typer.Option(help="Look-back: 30s, 5m, 1h, 2d.")] = "1h",
    protocol: Annotated[
        str | None, typer.Option("--protocol", help="Only this protocol (icmp, tcp, ...).")
    ] = None,
    traffic_class: Annotated[
        str | None, typer.Option("--class", help="Only this traffic class (high, ...).")
    ] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Add median and jitter.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="JSON instead of tables.")] = False,
    config: Annotated[Path | None, typer.Option("-c", "--config", help="Config file.")] = None,
    store: Annotated[Path | None, typer.Option(help="SQLite file (instead of -c).")] = None,
) -> None:
    """Window history of a route from the aggregator's SQLite store, one table per lane."""
    look_back = duration_option(since)
    path, retention = _store_path(config, store)

    async def query() -> list[HistoryRow]:
        history = await HistoryStore(path, retention).open()
        try:
            return await history.query(service, route, time.time() - look_back)
        finally:
            await history.close()

    rows = [
        row
        for row in asyncio.run(query())
        if protocol in (None, row.protocol) and traffic_class in (None, row.traffic_class)
    ]
    if json_output:
        sys.stdout.write(msgspec.json.encode(rows).decode() + "\n")
        return
    console.print(f"[bold]{service} / {route}[/], last {since}: {len(rows)} rows", highlight=False)
    for lane, lane_rows in by_lane(rows).items():
        console.print()
        console.print(lane_table(lane, lane_rows, wide))
