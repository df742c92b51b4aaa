"""`pathwatch bench passive`: sessions learned from conntrack vs sessions opened."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from pathwatch.app import bench_app, examples
from pathwatch.bench.passive import report, run_bench
from pathwatch.cliduration import duration_option


@bench_app.command(
    "passive",
    epilog=examples(
        "sudo pathwatch bench passive --seconds 10 --clients 2",
        "sudo pathwatch bench passive --all-events",
    ),
)
def bench_passive(
    clients: Annotated[int, typer.Option(help="Client processes opening sessions.")] = 2,
    seconds: Annotated[
        float, typer.Option(parser=duration_option, help="Length of each phase (10, 10s).")
    ] = 10.0,
    all_events: Annotated[
        bool,
        typer.Option(
            "--all-events", help="Let conntrack send every event (no `ct event set` rule)."
        ),
    ] = False,
) -> None:
    """Sessions per second learned by one agent, its CPU, messages published, nothing lost."""
    if os.geteuid() != 0:
        typer.echo("pathwatch bench passive needs root (it creates network namespaces)", err=True)
        raise typer.Exit(2)
    if not 1 <= clients <= 64:
        raise typer.BadParameter("clients must be between 1 and 64")
    if not 1 <= seconds <= 600:
        raise typer.BadParameter("seconds must be between 1 and 600")
    figures = run_bench(clients, seconds, event_mask=not all_events)
    for line in report(figures, clients):
        typer.echo(line)
