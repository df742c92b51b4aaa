"""`pathwatch bench failover`: fault-to-failover times on the namespace bed (root)."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Annotated

import typer

from pathwatch.app import bench_app, examples
from pathwatch.cliduration import duration_option
from pathwatch.rolecli import err_console


@bench_app.command(
    "failover",
    epilog=examples(
        "sudo pathwatch bench failover",
        "sudo pathwatch bench failover --runs 3 --false-alarm-seconds 0 --no-bfd",
    ),
)
def bench_failover(
    runs: Annotated[
        int,
        typer.Option(help="Runs of each fault (link down, blackholes, 30 % loss)."),
    ] = 10,
    probe_interval: Annotated[
        float, typer.Option(parser=duration_option, help="UDP probe interval (0.1, 100ms).")
    ] = 0.1,
    consecutive_failures: Annotated[int, typer.Option(help="Fast-path failures in a row.")] = 3,
    hold_down: Annotated[
        float, typer.Option(parser=duration_option, help="Hold-down of path 1 (1, 1s).")
    ] = 1.0,
    confirm_interval: Annotated[
        float,
        typer.Option(
            parser=duration_option, help="Re-probe interval of confirm mode (0.01, 10ms; 0: off)."
        ),
    ] = 0.01,
    reply_timeout_min: Annotated[
        float,
        typer.Option(parser=duration_option, help="Floor of the probes' reply timeout (20ms)."),
    ] = 0.02,
    false_alarm_seconds: Annotated[
        float,
        typer.Option(
            parser=duration_option, help="Time of 5 % loss counting false take-downs (0: skip)."
        ),
    ] = 120.0,
    rate_seconds: Annotated[
        float,
        typer.Option(parser=duration_option, help="Healthy time counting probe packets (0: skip)."),
    ] = 10.0,
    bfd: Annotated[
        bool, typer.Option(help="Run FRR's bfdd on the same bed as the baseline.")
    ] = True,
    hold_expiries: Annotated[
        int,
        typer.Option(
            help="Hold-down expiries a blackholed path 1 must stay out of service across"
            " (0: skip that check)."
        ),
    ] = 2,
) -> None:
    """Fault on path 1 to path down, route changed, traffic flowing; BFD alongside (root)."""
    if os.geteuid() != 0:
        err_console.print(
            "[bold red]error:[/] bench failover builds network namespaces: run as root"
        )
        raise typer.Exit(1)
    if runs < 1:
        raise typer.BadParameter("runs must be at least 1")
    from pathwatch.bench.bedstack import StackOptions
    from pathwatch.bench.failover import BenchPlan, report, run_failover

    options = StackOptions(
        probe_interval=probe_interval,
        consecutive_failures=consecutive_failures,
        hold_down=hold_down,
        healer=False,
        confirm_interval=confirm_interval,
        reply_timeout_min=reply_timeout_min,
        reference=True,
    )
    plan = BenchPlan(
        runs=runs,
        false_alarm_seconds=false_alarm_seconds,
        rate_seconds=rate_seconds,
        bfd=bfd,
        hold_expiries=hold_expiries,
    )

    def progress(line: str) -> None:
        err_console.print(line, highlight=False, markup=False, soft_wrap=True)

    logging.getLogger("pathwatch").setLevel(logging.ERROR)
    result = asyncio.run(run_failover(plan, options, progress))
    for line in report(result):
        typer.echo(line)
