"""`pathwatch show fleet`: every role instance and agent with its node, pathwatch version
and the config it runs, from the REST API (which follows their status messages and
heartbeats, `pathwatch.runtime.fleet`), the ones behind flagged (`--check`: exit 1 then)."""

from __future__ import annotations

import json as jsonlib
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from pathwatch.api_client import DEFAULT_API, ApiOption, TokenOption, api_request
from pathwatch.app import examples, show_app
from pathwatch.commands.show import JsonOption, _ago, console

#: `show fleet --check`: exit status when a member is behind.
EXIT_BEHIND = 1


def _config_of(member: dict[str, Any]) -> str:
    if not member["digest"]:
        return "[dim]unknown[/]"
    where = f"rev {member['revision']}" if member["revision"] else "file"
    return f"{where} {member['digest']}"


def _flags(member: dict[str, Any]) -> str:
    flags = []
    if member["silent"]:
        flags.append("[magenta]silent[/]")
    elif member["behind"]:
        flags.append("[red]behind[/]")
    if member["refused"]:
        flags.append(f"[yellow]refused {member['refused']}[/]")
    return ", ".join(flags) or "[green]current[/]"


def _title(report: dict[str, Any]) -> str:
    reference = report.get("reference")
    if reference is None:
        return "Fleet (no reference config: nothing pushed, and no config most members run)"
    if report["reference_from"] == "kv":
        return f"Fleet (latest config: revision {reference['revision']}, {reference['digest']})"
    return f"Fleet (no config in KV; most members run {reference['digest']})"


def fleet_table(report: dict[str, Any]) -> Table:
    """One row per member: role, instance, node, version, config, last heard, flags."""
    table = Table(title=_title(report), box=box.SIMPLE, title_justify="left")
    for column in ("role", "instance", "node", "version", "config", "heard", "status"):
        table.add_column(column, no_wrap=column in ("config", "status"))
    for member in report["members"]:
        table.add_row(
            member["role"],
            member["instance"],
            member["node"] or "-",
            member["version"] or "-",
            _config_of(member),
            _ago(member["last_seen"]),
            _flags(member),
        )
    return table


@show_app.command(
    "fleet",
    epilog=examples(
        "pathwatch show fleet", "pathwatch show fleet --check", "pathwatch show fleet --json"
    ),
)
def show_fleet(
    config_name: Annotated[
        str | None,
        typer.Option(
            "--config-name", help="Compare with this config in KV (default: the API's default)."
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help=f"Exit {EXIT_BEHIND} when a member is behind.")
    ] = False,
    json: JsonOption = False,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
) -> None:
    """Every role and agent: node, version, the config it runs, and whether it is behind."""
    report = api_request("GET", api, "/api/v1/fleet", params={"config": config_name}, token=token)
    if json:
        typer.echo(jsonlib.dumps(report, indent=2))
    elif report["members"]:
        console.print(fleet_table(report))
    else:
        console.print("no role has reported yet")
    if check and any(m["behind"] for m in report["members"]):
        raise typer.Exit(EXIT_BEHIND)
