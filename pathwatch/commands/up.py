"""`pathwatch up`: run everything in one process (embedded NATS by default)."""

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from pathwatch.app import app
from pathwatch.rolecli import LogFormatOption, load_or_exit, run_until_signal, setup_logging


@app.command()
def up(
    config: Annotated[
        Path | None,
        typer.Option(
            "-c", "--config", help="Config file (YAML or TOML); default: the embedded one."
        ),
    ] = None,
    node: Annotated[
        str | None, typer.Option(help="Probe only routes whose next hop is on this node.")
    ] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
    log_format: LogFormatOption = "text",
) -> None:
    """Run agent, aggregator, enforcer and API in one process; SIGHUP reads the config again.

    Example: [bold]pathwatch up[/] then, in another shell, [bold]pathwatch show service-path[/].
    """
    from pathwatch.runtime.configsource import FileSource
    from pathwatch.statedir import StateDirBusy
    from pathwatch.up import ComponentFailed, run_all

    setup_logging(verbose, log_format)
    loaded = load_or_exit(config)

    async def main(stop: asyncio.Event) -> None:
        source = FileSource(config, loaded)
        source.listen_for_hup()
        try:
            await run_all(loaded, stop, node=node, source=source)
        except (ComponentFailed, StateDirBusy) as exc:
            logging.getLogger("pathwatch.up").error("%s", exc)
            raise typer.Exit(1) from None

    run_until_signal(main)
