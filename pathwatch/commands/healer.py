"""`pathwatch healer`: heal one client's connection to a service (see docs/healer.md)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
from pathwatch.runtime.configstore import DEFAULT_NAME
from schemas.config import PathwatchConfig

if TYPE_CHECKING:
    from agents.healer.healer import Healer
    from pathwatch.runtime.metrics_http import MetricsHttpServer


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
    metrics_listen: Annotated[
        str | None,
        typer.Option("--metrics-listen", help="Serve /metrics on HOST:PORT (e.g. 127.0.0.1:9465)."),
    ] = None,
    json_events: Annotated[
        bool, typer.Option("--json", help="Write each event as one JSON object per line.")
    ] = False,
    config_from: ConfigFromOption = None,
    config_name: ConfigNameOption = DEFAULT_NAME,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
    log_format: LogFormatOption = "text",
) -> None:
    """Keep a client on a working route: liveness checks, reselect, re-request.

    Example: [bold]pathwatch healer -c pathwatch.yaml --service web --route web-route1
    --source 127.0.0.1[/]
    """
    from agents.healer.healer import START_ONLY, Healer, HealerError
    from agents.healer.settings import SettingsError
    from pathwatch.runtime.bus import Bus
    from pathwatch.runtime.listen import parse_listen

    setup_logging(verbose, log_format)
    role_config = role_config_or_exit(config, config_from, config_name)

    def has_route(config: PathwatchConfig) -> None:
        services = config.services
        if service not in services or route not in services[service].service_routes:
            err_console.print(
                f"[bold red]error:[/] {service}.{route}: no such service route in the config",
                highlight=False,
            )
            raise typer.Exit(2)

    role_config.precheck(has_route)
    options = bus_options_or_exit(role_config.nats, f"healer-{service}", nats)

    if metrics_listen is not None:
        try:
            parse_listen(metrics_listen)
        except ValueError as exc:
            err_console.print(f"[bold red]error:[/] --metrics-listen: {exc}", highlight=False)
            raise typer.Exit(2) from None

    async def main(stop: asyncio.Event) -> None:
        bus = await Bus.connect(options, stop)
        try:
            config_source = await role_config.open(bus, stop, has_route)
            live = config_source.live("healer", START_ONLY)
            try:
                healing = Healer(
                    live.config,
                    bus,
                    service=service,
                    route=route,
                    source=source,
                    destination=destination,
                    netns=netns,
                    sink=write_event if json_events else None,
                    live=live,
                )
            except (HealerError, SettingsError) as exc:
                err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
                raise typer.Exit(2) from None
            metrics = start_metrics(healing, metrics_listen)
            try:
                async with following(config_source, stop):
                    await healing.run(stop)
            finally:
                if metrics is not None:
                    metrics.stop()
        finally:
            await bus.close()

    run_until_signal(main)


def start_metrics(healing: Healer, listen: str | None) -> MetricsHttpServer | None:
    """`/metrics` of the healer on `listen` (None: not served); exit 2 if it cannot bind."""
    from agents.healer.metrics import serve_metrics
    from pathwatch.runtime.listen import ListenError

    if listen is None:
        return None
    try:
        return serve_metrics(healing, listen)
    except ListenError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def write_event(line: bytes) -> None:
    """One JSON event line on stdout, flushed (logs go to stderr). A reader that went
    away costs the event lines, not the healing."""
    with contextlib.suppress(OSError):
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
