"""The typer applications every CLI command module attaches to.

Command modules live in `pathwatch.commands` (one module per role or concern)
and are discovered by `pathwatch.cli`, so adding a command is adding a file.
"""

import typer

app = typer.Typer(
    name="pathwatch",
    help="Learn the health of network paths and steer traffic away from sick ones.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
show_app = typer.Typer(
    help="Show live state (service paths, load balancer, alarms).", no_args_is_help=True
)
bench_app = typer.Typer(
    help="Benchmarks that print figures and their ratio to a baseline.", no_args_is_help=True
)
config_app = typer.Typer(help="Check configuration files.", no_args_is_help=True)
schema_app = typer.Typer(help="The wire contract as JSON Schema.", no_args_is_help=True)

app.add_typer(show_app, name="show")
app.add_typer(bench_app, name="bench")
app.add_typer(config_app, name="config")
app.add_typer(schema_app, name="schema")
