"""`pathwatch bench failover`: fault-to-failover times on the namespace bed (root)."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Annotated

import typer

from pathwatch.app import bench_app, examples
from pathwatch.cliduration import duration_option
from pathwatch.runtime import err_console


@bench_app.command(
    "failover",
    epilog=examples("sudo pathwatch bench failover", "sudo pathwatch bench failover --runs 3"),
)
def bench_failover(
    runs: Annotated[
        int, typer.Option(help="Runs of each fault (link down, blackhole, loss).")
    ] = 10,
    probe_interval: Annotated[
        float, typer.Option(parser=duration_option, help="UDP probe interval (0.1, 100ms).")
    ] = 0.1,
    consecutive_failures: Annotated[int, typer.Option(help="Fast-path failures in a row.")] = 3,
    hold_down: Annotated[
        float, typer.Option(parser=duration_option, help="Hold-down of path 1 (1, 1s).")
    ] = 1.0,
) -> None:
    """Time from a fault on path 1 to path down in KV, route changed, traffic flowing (root)."""
    if os.geteuid() != 0:
        err_console.print(
            "[bold red]error:[/] bench failover builds network namespaces: run as root"
        )
        raise typer.Exit(1)
    if runs < 1:
        raise typer.BadParameter("runs must be at least 1")
    from pathwatch.bench.bedstack import StackOptions
    from pathwatch.bench.failover import FaultRun, report, run_failover

    options = StackOptions(
        probe_interval=probe_interval,
        consecutive_failures=consecutive_failures,
        hold_down=hold_down,
        healer=False,
    )

    def progress(run: FaultRun) -> None:
        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value * 1000:.0f}"

        err_console.print(
            f"{run.fault:<10} kv {ms(run.kv_down):>6} ms  route {ms(run.route_changed):>6} ms"
            f"  traffic {ms(run.traffic_back):>6} ms",
            highlight=False,
        )

    logging.getLogger("pathwatch").setLevel(logging.ERROR)
    result = asyncio.run(run_failover(runs, options, progress))
    for line in report(result):
        typer.echo(line)
