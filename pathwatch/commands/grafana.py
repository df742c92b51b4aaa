"""`pathwatch grafana ...`: provision Grafana, regenerate the dashboards, annotate alarms."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from grafana_client.client import GrafanaException
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from pathwatch.app import app, examples
from pathwatch.grafana.annotations import run_annotator
from pathwatch.grafana.dashboards import Thresholds, build_dashboards, write_dashboards
from pathwatch.grafana.provision import DEFAULT_PROMETHEUS_URL, connect, provision
from pathwatch.rolecli import (
    LogFormatOption,
    bus_options_or_exit,
    err_console,
    load_or_exit,
    run_until_signal,
    setup_logging,
)
from pathwatch.runtime.bus import Bus
from schemas import subjects

grafana_app = typer.Typer(
    help="Grafana: provision the data source and dashboards, regenerate them, annotate alarms.",
    epilog=examples(
        "pathwatch grafana dashboards --out deploy/grafana",
        "pathwatch grafana provision --url http://127.0.0.1:3000 --token TOKEN",
    ),
    no_args_is_help=True,
)
app.add_typer(grafana_app, name="grafana")
console = Console()

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "-c", "--config", help="Config file (thresholds drawn, grafana.url / grafana.token)."
    ),
]


def _thresholds(config: Path | None) -> Thresholds:
    if config is None:
        return Thresholds.defaults()
    return Thresholds.from_config(load_or_exit(config).config)


@grafana_app.command("dashboards")
def dashboards_command(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the JSON into.")] = Path(
        "deploy/grafana"
    ),
    config: ConfigOption = None,
) -> None:
    """Regenerate the dashboards' JSON (deterministic: same input, same bytes).

    Example: [bold]pathwatch grafana dashboards --out deploy/grafana[/]
    """
    for path in write_dashboards(out, _thresholds(config)):
        console.print(f"wrote {path}")


@grafana_app.command("provision")
def provision_command(
    url: Annotated[str | None, typer.Option(help="Grafana base URL (default grafana.url).")] = None,
    token: Annotated[
        str | None,
        typer.Option(help="Grafana service-account token (default grafana.token)."),
    ] = None,
    prometheus_url: Annotated[
        str, typer.Option(help="URL Grafana reaches Prometheus at.")
    ] = DEFAULT_PROMETHEUS_URL,
    config: ConfigOption = None,
) -> None:
    """Upsert the Prometheus data source, the pathwatch folder and the dashboards (idempotent).

    Example: [bold]pathwatch grafana provision --url http://127.0.0.1:3000 --token TOKEN[/]
    """
    settings = load_or_exit(config).config.grafana if config is not None else None
    base_url = url or (settings.url if settings else None)
    credential = token or (settings.token if settings else None)
    if not base_url:
        err_console.print("[bold red]error:[/] give --url or set grafana.url in the config")
        raise typer.Exit(2)
    dashboards = build_dashboards(_thresholds(config))
    api = connect(base_url, credential)
    steps = 2 + len(dashboards)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        console=console,
    ) as progress:
        task = progress.add_task("provisioning Grafana", total=steps)

        def on_step(text: str) -> None:
            progress.console.print(f"  {text}")
            progress.advance(task)

        try:
            report = provision(api, dashboards, prometheus_url, on_step=on_step)
        except GrafanaException as error:
            err_console.print(f"[bold red]error:[/] Grafana answered {error.status_code}: {error}")
            raise typer.Exit(1) from None
        except OSError as error:
            err_console.print(f"[bold red]error:[/] cannot reach Grafana at {base_url}: {error}")
            raise typer.Exit(1) from None
    console.print(
        f"done: data source {report.datasource}, folder {report.folder},"
        f" {len(report.dashboards)} dashboards saved"
    )


@grafana_app.command("annotate")
def annotate_command(
    config: ConfigOption = None,
    nats: Annotated[
        str | None, typer.Option(help="NATS server URL(s), overrides nats.url.")
    ] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
    log_format: LogFormatOption = "text",
) -> None:
    """Follow the alarms and post each raised / cleared one as a Grafana annotation.

    Needs grafana.url (and grafana.token) in the config.
    Example: [bold]pathwatch grafana annotate -c pathwatch.yaml[/]
    """
    setup_logging(verbose, log_format)
    cfg = load_or_exit(config).config
    if not cfg.grafana.url:
        err_console.print("[bold red]error:[/] set grafana.url (and grafana.token) in the config")
        raise typer.Exit(2)
    options = bus_options_or_exit(cfg.nats, "grafana-annotator", nats)
    api = connect(cfg.grafana.url, cfg.grafana.token)

    async def main(stop: asyncio.Event) -> None:
        bus = await Bus.connect(options, stop)
        try:
            # a fresh server has no alarm stream until a role makes it
            await bus.try_ensure(streams=[subjects.STREAM_ALARMS], buckets=[])
            await run_annotator(bus, api, stop=stop)
        finally:
            await bus.close()

    run_until_signal(main)
