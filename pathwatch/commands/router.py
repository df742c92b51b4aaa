"""`pathwatch router`: run the route actuator of one node (see docs/router.md)."""

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from pathwatch.app import app
from pathwatch.rolecli import (
    LogFormatOption,
    bus_options_or_exit,
    err_console,
    run_until_signal,
    setup_logging,
)
from pathwatch.roleconfig import (
    ConfigFromOption,
    ConfigNameOption,
    following,
    role_config_or_exit,
)
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configstore import DEFAULT_NAME
from schemas import subjects
from schemas.config import PathwatchConfig
from schemas.names import is_subject_safe


@app.command()
def router(
    config: Annotated[Path, typer.Option("-c", "--config", help="Config file (YAML or TOML).")],
    node: Annotated[
        str, typer.Option(help="Act on service routes whose next hop is on this node.")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Log the route changes it would make; change nothing.")
    ] = False,
    nats: Annotated[
        str | None, typer.Option("--nats", help="NATS server list; overrides nats.url.")
    ] = None,
    netns: Annotated[
        str | None, typer.Option("--netns", help="Work inside this (existing) network namespace.")
    ] = None,
    config_from: ConfigFromOption = None,
    config_name: ConfigNameOption = DEFAULT_NAME,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
    log_format: LogFormatOption = "text",
) -> None:
    """Keep this node's kernel routes in line with path state (needs CAP_NET_ADMIN).

    Example: [bold]pathwatch router -c pathwatch.yaml --node edge-1 --dry-run[/]
    """
    from agents.router import START_ONLY, RouterError, run_router
    from agents.routing.capability import NetAdminMissing, require_net_admin

    setup_logging(verbose, log_format)
    role_config = role_config_or_exit(config, config_from, config_name)
    if not is_subject_safe(node):
        err_console.print(f"[bold red]error:[/] node {node!r}: letters, digits, '-' and '_' only")
        raise typer.Exit(2)

    def may_change_routes(config: PathwatchConfig) -> None:
        if not (dry_run or config.router.dry_run):
            try:
                require_net_admin()
            except NetAdminMissing as exc:
                err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
                raise typer.Exit(1) from None

    role_config.precheck(may_change_routes)
    options = bus_options_or_exit(role_config.nats, f"router-{node}", nats)

    async def main(stop: asyncio.Event) -> None:
        bus = await Bus.connect(options, stop)
        try:
            await bus.try_ensure(streams=[subjects.STREAM_COMMANDS], buckets=[subjects.KV_PATHS])
            source = await role_config.open(bus, stop, may_change_routes)
            live = source.live("router", START_ONLY)
            async with following(source, stop):
                await run_router(
                    live.config, bus, stop=stop, node=node, dry_run=dry_run, netns=netns, live=live
                )
        except (RouterError, NetAdminMissing) as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None
        finally:
            await bus.close()

    run_until_signal(main)
