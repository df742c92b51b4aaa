"""`pathwatch demo`: two paths in network namespaces, faults on one, traffic moving (root)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from typing import Annotated

import typer
from rich.console import Console

from pathwatch.app import app, examples
from pathwatch.cliduration import duration_option
from pathwatch.rolecli import err_console


@app.command(epilog=examples("sudo pathwatch demo", "sudo pathwatch demo --hold-down 2 --verbose"))
def demo(
    hold_down: Annotated[
        float, typer.Option(parser=duration_option, help="Hold-down of path 1 (6, 6s).")
    ] = 6.0,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Log every part.")] = False,
) -> None:
    """Break a path three ways and watch traffic move to the other and back (needs root)."""
    if os.geteuid() != 0:
        err_console.print(
            "[bold red]error:[/] pathwatch demo creates network namespaces and changes routes"
            " inside them: run it as root (sudo pathwatch demo)"
        )
        raise typer.Exit(1)
    missing = [tool for tool in ("ip", "nft", "iptables") if shutil.which(tool) is None]
    if missing:
        err_console.print(f"[bold red]error:[/] pathwatch demo needs {', '.join(missing)}")
        raise typer.Exit(1)
    from pathwatch.demo import run_demo

    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR)
    if not verbose:
        logging.getLogger("pathwatch").setLevel(logging.ERROR)
    try:
        asyncio.run(run_demo(Console(), hold_down))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
