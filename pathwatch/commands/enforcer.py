"""`pathwatch enforcer` (judge and enforce, active / standby) and `pathwatch api` (REST API)."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Annotated

import typer

from pathwatch.app import app, bench_app, examples
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
from schemas.validate import loopback_host

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Config file (YAML or TOML).")]
log = logging.getLogger("pathwatch")

NatsOption = Annotated[
    str | None, typer.Option("--nats", help="NATS server URL(s), overriding nats.url.")
]


@app.command(
    "enforcer",
    epilog=examples(
        "pathwatch enforcer -c pathwatch.yaml",
        "pathwatch enforcer -c pathwatch.yaml --instance enforcer-b",
        "pathwatch enforcer -c bootstrap.yaml --config-from nats",
    ),
)
def enforcer_command(
    config: ConfigOption,
    instance: Annotated[
        str | None,
        typer.Option("--instance", help="Instance name for the lease (default: host name)."),
    ] = None,
    nats: NatsOption = None,
    store: Annotated[
        Path | None, typer.Option("--store", help="SQLite file (default: store.path).")
    ] = None,
    config_from: ConfigFromOption = None,
    config_name: ConfigNameOption = DEFAULT_NAME,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    log_format: LogFormatOption = "text",
) -> None:
    """Judge windows, run the path state machine, raise alarms and command routers / healers.

    Run two for high availability: one is active through a lease in NATS KV, the other
    follows every input and takes over within two lease TTLs.
    """
    from enforcer.service import START_ONLY, run_enforcer

    setup_logging(verbose, log_format)
    role_config = role_config_or_exit(config, config_from, config_name)
    name = instance or socket.gethostname()
    options = bus_options_or_exit(role_config.nats, f"enforcer-{name}", nats)

    async def main(stop: asyncio.Event) -> None:
        bus = await Bus.connect(options, stop)
        try:
            await bus.ensure()
            source = await role_config.open(bus, stop)
            live = source.live("enforcer", START_ONLY)
            async with following(source, stop):
                await run_enforcer(
                    live.config,
                    bus,
                    stop=stop,
                    instance=name,
                    store_path=store or live.config.store.path,
                    live=live,
                )
        finally:
            await bus.close()

    run_until_signal(main)


@app.command(
    "api",
    epilog=examples(
        "pathwatch api -c pathwatch.yaml",
        "pathwatch api -c pathwatch.yaml --listen 127.0.0.1:8641",
        "pathwatch api -c bootstrap.yaml --config-from nats",
    ),
)
def api_command(
    config: ConfigOption,
    nats: NatsOption = None,
    listen: Annotated[
        str | None, typer.Option("--listen", help="HOST:PORT, overriding api.listen.")
    ] = None,
    config_from: ConfigFromOption = None,
    config_name: ConfigNameOption = DEFAULT_NAME,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    log_format: LogFormatOption = "text",
) -> None:
    """Serve the REST API (service paths, load balancer, alarms, probe state, fleet, OpenAPI)."""
    from enforcer.api import START_ONLY, run_api
    from pathwatch.runtime.listen import ListenError, parse_listen

    setup_logging(verbose, log_format)
    role_config = role_config_or_exit(config, config_from, config_name)
    host = None
    if listen:
        try:
            host, _ = parse_listen(listen)
        except ValueError as exc:
            err_console.print(f"[bold red]error:[/] --listen: {exc}")
            raise typer.Exit(2) from None

    def token_off_loopback(config: PathwatchConfig) -> None:
        if host is not None and not loopback_host(host) and not config.api.token:
            err_console.print("[bold red]error:[/] a token (api.token) is required off loopback")
            raise typer.Exit(2)

    role_config.precheck(token_off_loopback)
    options = bus_options_or_exit(role_config.nats, "api", nats)

    async def main(stop: asyncio.Event) -> None:
        bus = await Bus.connect(options, stop)
        try:
            # the API owns no stream: it only checks what it reads (its user may not update)
            await bus.try_ensure(
                streams=[subjects.STREAM_ALARMS], buckets=[subjects.KV_PATHS, subjects.KV_PROBES]
            )
            source = await role_config.open(bus, stop, token_off_loopback)
            live = source.live("api", START_ONLY)
            async with following(source, stop):
                await run_api(live.config, bus, stop=stop, listen=listen, live=live)
        except ListenError as exc:
            log.error("%s", exc)
            raise typer.Exit(1) from None
        finally:
            await bus.close()

    run_until_signal(main)


@bench_app.command(
    "enforce",
    epilog=examples("pathwatch bench enforce", "pathwatch bench enforce --lanes 10000 --closes 3"),
)
def bench_enforce(
    lanes: Annotated[int, typer.Option(help="Lanes judged per window close.")] = 100_000,
    closes: Annotated[int, typer.Option(help="Window closes to time.")] = 5,
    vary: Annotated[
        bool,
        typer.Option(help="Headline on windows whose figures change every close (real)."),
    ] = True,
) -> None:
    """Time to judge every lane of one window close, against a no-judgement baseline."""
    from pathwatch.bench.enforce import report, run_bench

    if lanes < 1 or closes < 1:
        raise typer.BadParameter("lanes and closes must be positive")
    for line in report(run_bench(lanes, closes, vary)):
        typer.echo(line)
