"""`pathwatch bench startup`: how fast `pathwatch show ...` answers (implemented in
`pathwatch.bench.startup`)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pathwatch.api_client import DEFAULT_API, ApiOption
from pathwatch.app import bench_app, examples

#: The issue's target for `pathwatch show ...` on the 2-core build machine.
TARGET_SECONDS = 0.3


@bench_app.command(
    "startup",
    epilog=examples(
        "pathwatch bench startup",
        "pathwatch bench startup --runs 20 --api http://127.0.0.1:8640",
    ),
)
def bench_startup(
    runs: Annotated[int, typer.Option(help="Timed runs of each command.")] = 10,
    api: ApiOption = DEFAULT_API,
) -> None:
    """Wall and CPU time of `pathwatch show service-path --json` vs `python -c pass`."""
    from pathwatch.bench.startup import pathwatch_command, report, run_bench

    if runs < 1:
        raise typer.BadParameter("runs must be at least 1")
    command = [*pathwatch_command(), "show", "service-path", "--json", "--api", api]
    timed, baseline = run_bench(command, [sys.executable, "-c", "pass"], runs)
    for line in report(command, timed, baseline, TARGET_SECONDS):
        typer.echo(line)
    if any(run.status != 0 for run in timed):
        typer.echo(f"error: the show command failed; is the API at {api} up?", err=True)
        raise typer.Exit(1)
