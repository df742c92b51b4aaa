"""`pathwatch healer`: heal one client's connection to a service (see docs/healer.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from pathwatch.app import app
from pathwatch.runtime import (
    LogFormatOption,
    bus_options_or_exit,
    err_console,
    load_or_exit,
    run_until_signal,
    setup_logging,
)


@app.command()
def healer(
    config: Annotated[Path, typer.Option("-c", "--config", help="Config file (YAML or TOML).")],
    service: Annotated[str, typer.Option(help="The service the client is connected to.")],
    route: Annotated[str, typer.Option(help="The service route the client starts on.")],
    source: Annotated[
        list[str] | None,
        typer.Option(help="Client address(es) for the liveness check (repeatable)."),
    ] = None,
    destination: Annotated[
        list[str] | None,
        typer.Option(help="Far-end address(es); default: the service's host addresses."),
    ] = None,
    netns: Annotated[
        str | None,
        typer.Option("--netns", help="The client's (existing) network namespace."),
    ] = None,
    nats: Annotated[
        str | None, typer.Option("--nats", help="NATS server list; overrides nats.url.")
    ] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
    log_format: LogFormatOption = "text",
) -> None:
    """Keep a client on a working route: liveness checks, reselect, re-request.

    Example: [bold]pathwatch healer -c pathwatch.yaml --service web --route web-route1
    --source 127.0.0.1[/]
    """
    from agents.healer.healer import Healer, HealerError
    from agents.healer.settings import SettingsError
    from pathwatch.bus import Bus

    setup_logging(verbose, log_format)
    loaded = load_or_exit(config)
    services = loaded.config.services
    if service not in services or route not in services[service].service_routes:
        err_console.print(
            f"[bold red]error:[/] {service}.{route}: no such service route in {loaded.source}",
            highlight=False,
        )
        raise typer.Exit(2)
    options = bus_options_or_exit(loaded.config.nats, f"healer-{service}", nats)

    async def main(stop: asyncio.Event) -> None:
        bus = await Bus.connect(options, stop)
        try:
            try:
                healing = Healer(
                    loaded.config,
                    bus,
                    service=service,
                    route=route,
                    source=source,
                    destination=destination,
                    netns=netns,
                )
            except (HealerError, SettingsError) as exc:
                err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
                raise typer.Exit(2) from None
            await healing.run(stop)
        finally:
            await bus.close()

    run_until_signal(main)
