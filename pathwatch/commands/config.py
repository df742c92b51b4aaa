"""`pathwatch config check|show|docs` and `pathwatch schema export`."""

import json
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.console import Console

from pathwatch.app import config_app, examples, schema_app
from pathwatch.configfile import default_config_text
from pathwatch.runtime import load_or_exit
from schemas.export import export

console = Console()


@config_app.command("check")
def config_check(
    file: Annotated[Path, typer.Argument(help="Config file, YAML (.yaml/.yml) or TOML (.toml).")],
) -> None:
    """Check a config file: exit 0 when good, 2 with the key path of every error when bad.

    Example: [bold]pathwatch config check deploy/examples/pathwatch.yaml[/]
    """
    loaded = load_or_exit(file)
    routes = loaded.config.routes()
    console.print(
        f"[green]ok[/] {loaded.source}: {len(loaded.config.services)} services,"
        f" {len(routes)} service-routes, {len(loaded.warnings)} warnings"
    )


@config_app.command(
    "show",
    epilog=examples(
        "pathwatch config show > pathwatch.yaml",
        "pathwatch config show --effective pathwatch.yaml",
    ),
)
def config_show(
    file: Annotated[
        Path | None, typer.Argument(help="Config file; default: the embedded one.")
    ] = None,
    effective: Annotated[
        bool, typer.Option(help="Print the config with every default filled in (JSON).")
    ] = False,
) -> None:
    """Print a config file (or the embedded default), optionally with defaults filled in."""
    if not effective:
        typer.echo(default_config_text() if file is None else file.read_text(), nl=False)
        return
    loaded = load_or_exit(file)
    typer.echo(json.dumps(msgspec.to_builtins(loaded.config), indent=2))


@config_app.command("docs")
def config_docs() -> None:
    """Print the configuration reference (Markdown): every key with type, unit, default, use.

    Example: [bold]pathwatch config docs > docs/config.md[/]
    """
    from schemas.configdoc import render

    typer.echo(render(), nl=False)


@schema_app.command("export", epilog=examples("pathwatch schema export schemas-out/"))
def schema_export(
    directory: Annotated[Path, typer.Argument(help="Directory to write *.schema.json into.")],
) -> None:
    """Write one JSON Schema per wire message type (and the config) into DIRECTORY."""
    for path in export(directory):
        console.print(f"wrote {path}")
