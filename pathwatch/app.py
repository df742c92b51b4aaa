"""The typer applications every CLI command module attaches to.

Command modules live in `pathwatch.commands` (one module per role or concern)
and are loaded by `pathwatch.cli`, so adding a command is adding a file.
Every command's help ends with examples (`examples`; tests/test_cli_help.py checks it).
"""

from typing import Annotated

import typer


def examples(*command_lines: str) -> str:
    """The epilog of a command's help: example command lines (every command has some)."""
    return "[bold]Examples[/]\n\n" + "\n".join(f"  {line}" for line in command_lines)


app = typer.Typer(
    name="pathwatch",
    help="Learn the health of network paths and steer traffic away from sick ones.",
    epilog=examples(
        "pathwatch up",
        "pathwatch show service-path",
        "pathwatch config check deploy/examples/pathwatch.yaml",
        "pathwatch show load-balancer --help",
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
show_app = typer.Typer(
    help="Show live state (service paths, load balancer, alarms) from the REST API.",
    epilog=examples(
        "pathwatch show service-path --service loopback",
        "pathwatch show load-balancer",
        "pathwatch show alarms --check",
    ),
    no_args_is_help=True,
)
bench_app = typer.Typer(
    help="Benchmarks that print figures and their ratio to a baseline.",
    epilog=examples("pathwatch bench probe", "pathwatch bench enforce --lanes 10000"),
    no_args_is_help=True,
)
config_app = typer.Typer(
    help="Check configuration files; keep the fleet's config in NATS (push, history, rollback).",
    epilog=examples(
        "pathwatch config check pathwatch.yaml",
        "pathwatch config show --effective pathwatch.yaml",
        "pathwatch config push pathwatch.yaml",
    ),
    no_args_is_help=True,
)
schema_app = typer.Typer(
    help="The wire contract as JSON Schema.",
    epilog=examples("pathwatch schema export schemas-out/"),
    no_args_is_help=True,
)

app.add_typer(show_app, name="show")
app.add_typer(bench_app, name="bench")
app.add_typer(config_app, name="config")
app.add_typer(schema_app, name="schema")


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import version

        typer.echo(f"pathwatch {version('pathwatch')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Options of `pathwatch` itself (the help text is the app's)."""
