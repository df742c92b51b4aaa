"""`pathwatch bench probe`: the shared-socket ICMP engine against icmplib's multiping."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from pathwatch.app import bench_app, examples
from pathwatch.bench.probe import report, run_bench


@bench_app.command(
    "probe",
    epilog=examples("pathwatch bench probe", "pathwatch bench probe --count 100 --concurrency 10"),
)
def bench_probe(
    count: Annotated[int, typer.Option(help="Loopback addresses to ping (127.0.x.y).")] = 1000,
    concurrency: Annotated[int, typer.Option(help="Pings in flight at once (both tools).")] = 50,
    quiet_samples: Annotated[int, typer.Option(help="Sequential pings for the quiet RTT.")] = 20,
) -> None:
    """Probes per second and RTT inflation of the agent's ICMP engine vs icmplib."""
    if not 1 <= count <= 62500:
        raise typer.BadParameter("count must be between 1 and 62500")
    engine, baseline = asyncio.run(run_bench(count, concurrency, quiet_samples))
    for line in report(engine, baseline, concurrency):
        typer.echo(line)
