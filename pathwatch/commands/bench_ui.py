"""`pathwatch bench ui`: status page server times and change-to-browser delay."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from pathwatch.app import bench_app, examples
from pathwatch.rolecli import err_console


@bench_app.command(
    "ui", epilog=examples("pathwatch bench ui", "pathwatch bench ui --runs 10 --samples 5")
)
def bench_ui(
    runs: Annotated[int, typer.Option(help="Requests per page and per baseline.")] = 30,
    samples: Annotated[int, typer.Option(help="KV changes timed to the browser.")] = 20,
) -> None:
    """Overview and 24 h route page times with 1,000 routes, vs their JSON; KV change to browser."""
    if runs < 1 or samples < 1:
        raise typer.BadParameter("runs and samples must be at least 1")
    from pathwatch.bench.ui import report, run_bench

    logging.getLogger("pathwatch").setLevel(logging.ERROR)
    figures = asyncio.run(run_bench(runs, samples, lambda text: err_console.print(text)))
    for line in report(figures):
        typer.echo(line)
