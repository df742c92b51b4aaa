"""`pathwatch config check|show|docs|push|history|rollback` and `pathwatch schema export`.

`push`, `history`, `rollback` and `show --from nats` work on KV `pathwatch-config`
(`pathwatch.runtime.configstore`; docs/fleet-config.md).
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Literal, NoReturn, TypeVar

import msgspec
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from pathwatch.app import config_app, examples, schema_app
from pathwatch.commands.show import console as show_console
from pathwatch.rolecli import bus_options_or_exit, checked_or_exit, err_console, load_or_exit
from pathwatch.roleconfig import ConfigNameOption, only_nats
from pathwatch.runtime.bus import Bus, BusOptions, StopRequested
from pathwatch.runtime.configfile import default_config_text, parse_config
from pathwatch.runtime.configstore import (
    DEFAULT_NAME,
    ConfigStore,
    Pushed,
    StoredConfig,
    StoreError,
    push_checked,
)
from schemas.codec import DecodeError
from schemas.export import export

console = Console(soft_wrap=True)

#: Exit status when NATS cannot be reached (as for the API, docs/cli.md).
EXIT_NO_NATS = 3
#: Exit status when the store cannot do what was asked (no such revision, a push raced).
EXIT_STORE = 1
#: Seconds a one-shot command waits for NATS.
CONNECT_S = 5.0

T = TypeVar("T")

ConnectionOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="A config file (or a bootstrap file holding only nats:) saying how to reach NATS.",
    ),
]
NatsOption = Annotated[
    str | None, typer.Option("--nats", help="NATS server URL(s), overriding nats.url.")
]


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
        "pathwatch config show --from nats --revision 12",
    ),
)
def config_show(
    file: Annotated[
        Path | None, typer.Argument(help="Config file; default: the embedded one.")
    ] = None,
    effective: Annotated[
        bool, typer.Option(help="Print the config with every default filled in (JSON).")
    ] = False,
    source: Annotated[
        Literal["file", "nats"],
        typer.Option("--from", help="file: FILE (or the embedded one); nats: KV pathwatch-config."),
    ] = "file",
    revision: Annotated[
        int | None, typer.Option("--revision", help="With --from nats: this revision.")
    ] = None,
    name: ConfigNameOption = DEFAULT_NAME,
    connection: ConnectionOption = None,
    nats: NatsOption = None,
) -> None:
    """Print a config file (or the embedded default, or a revision in KV with --from nats)
    as written, or with every default filled in."""
    if source == "nats" or revision is not None:
        stored = _show_from_nats(name, revision, connection, nats)
        if not effective:
            typer.echo(stored.record.text, nl=False)
            return
        loaded = checked_or_exit(stored.load)
    elif not effective:
        typer.echo(default_config_text() if file is None else file.read_text(), nl=False)
        return
    else:
        loaded = load_or_exit(file)
    typer.echo(jsonlib.dumps(msgspec.to_builtins(loaded.config), indent=2))


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


# --- the fleet's configs in KV pathwatch-config (pathwatch.runtime.configstore) ------------------


def _connection(path: Path | None, nats: str | None, name: str) -> BusOptions:
    """How to reach NATS: `--nats`, the PATHWATCH_NATS_* variables, the file's `nats:`."""
    return bus_options_or_exit(load_or_exit(path).config.nats, name, nats)


def _on_nats(options: BusOptions, work: Callable[[ConfigStore], Awaitable[T]], create: bool) -> T:
    """Run `work` on the config store of a fresh connection; exit 3 when NATS cannot be
    reached within CONNECT_S, 1 when the store refuses."""

    async def main() -> T:
        stop = asyncio.Event()
        timer = asyncio.get_running_loop().call_later(CONNECT_S, stop.set)
        try:
            bus = await Bus.connect(options, stop)
        except StopRequested:
            _fail(EXIT_NO_NATS, f"cannot reach NATS at {','.join(options.servers)}")
        timer.cancel()
        try:
            return await work(await ConfigStore.open(bus, create=create))
        except StoreError as exc:
            _fail(EXIT_STORE, str(exc))
        finally:
            await bus.close()

    return asyncio.run(main())


def _fail(status: int, why: str) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {why}", highlight=False)
    raise typer.Exit(status)


@config_app.command(
    "push",
    epilog=examples(
        "pathwatch config push pathwatch.yaml",
        "pathwatch config push site-a.toml --config-name site-a -m 'tighter tcp threshold'",
        "pathwatch config push pathwatch.yaml -c admin-bootstrap.yaml",
    ),
)
def config_push(
    file: Annotated[Path, typer.Argument(help="Config file, YAML or TOML.")],
    name: ConfigNameOption = DEFAULT_NAME,
    message: Annotated[str, typer.Option("--message", "-m", help="A note kept with it.")] = "",
    force: Annotated[
        bool, typer.Option("--force", help="Push even when the latest revision is the same.")
    ] = False,
    connection: ConnectionOption = None,
    nats: NatsOption = None,
) -> None:
    """Check FILE as `config check` does and store it as the next revision in KV
    pathwatch-config: exit 2 with every error when bad. Roles that follow the config
    (--config-from nats) apply it within a second, with no restart."""
    text = _read_or_exit(file)
    loaded = checked_or_exit(lambda: parse_config(text, str(file)))
    if only_nats(loaded.config):
        _fail(2, f"{file} holds only `nats:`: there is nothing for the roles to run")
    options = _connection(connection or file, nats, "config-push")
    pushed = _on_nats(
        options,
        lambda store: push_checked(store, loaded, text, name=name, comment=message, force=force),
        create=True,
    )
    if pushed.unchanged:
        console.print(
            f"unchanged: revision {pushed.revision} of config {name!r} already holds"
            f" {file} (digest {loaded.digest}); --force pushes it again"
        )
        return
    console.print(
        f"[green]pushed[/] {file} as revision {pushed.revision} of config {name!r}"
        f" (digest {loaded.digest})"
    )


def _read_or_exit(file: Path) -> str:
    try:
        return file.read_text()
    except OSError as exc:
        _fail(2, f"{file}: cannot read file: {exc.strerror}")


@config_app.command(
    "history",
    epilog=examples(
        "pathwatch config history", "pathwatch config history --config-name site-a --json"
    ),
)
def config_history(
    name: ConfigNameOption = DEFAULT_NAME,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    connection: ConnectionOption = None,
    nats: NatsOption = None,
) -> None:
    """List the kept revisions of a config in KV pathwatch-config, newest last."""
    options = _connection(connection, nats, "config-history")
    history = _on_nats(options, lambda store: store.history(name), create=False)
    if not history:
        _fail(EXIT_STORE, f"config {name!r} has never been pushed")
    if json_out:
        for item in history:
            typer.echo(jsonlib.dumps(_history_row(item)))
        return
    show_console.print(history_table(name, history))


def _history_row(item: StoredConfig | tuple[int, str]) -> dict[str, object]:
    if isinstance(item, tuple):
        return {"revision": item[0], "error": item[1]}
    record = msgspec.to_builtins(item.record)
    record.pop("text", None)
    return {"revision": item.revision, **record}


def history_table(name: str, history: list[StoredConfig | tuple[int, str]]) -> Table:
    """One row per revision: when, who, digest, file, and what it was (rollback, note)."""
    table = Table(title=f"Config {name!r} in KV pathwatch-config", box=box.SIMPLE)
    for column in ("revision", "pushed", "by", "digest", "file", "note"):
        table.add_column(column, justify="right" if column == "revision" else "left")
    last = len(history) - 1
    for index, item in enumerate(history):
        marker = " [bold](latest)[/]" if index == last else ""
        if isinstance(item, tuple):
            table.add_row(f"{item[0]}{marker}", "-", "-", "-", "-", f"[red]{item[1]}[/]")
            continue
        record = item.record
        note = [f"rollback to {record.rollback_of}"] if record.rollback_of else []
        note += [record.comment] if record.comment else []
        table.add_row(
            f"{item.revision}{marker}",
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.pushed_at)),
            record.pushed_by,
            record.digest,
            record.source,
            "; ".join(note),
        )
    return table


@config_app.command(
    "rollback",
    epilog=examples(
        "pathwatch config rollback 12", "pathwatch config rollback 12 --config-name site-a"
    ),
)
def config_rollback(
    revision: Annotated[int, typer.Argument(help="The revision whose config to run again.")],
    name: ConfigNameOption = DEFAULT_NAME,
    message: Annotated[str, typer.Option("--message", "-m", help="A note kept with it.")] = "",
    connection: ConnectionOption = None,
    nats: NatsOption = None,
) -> None:
    """Push the text of an old REVISION again, as a new revision: the history stays one
    line and every role moves forward to it. The old text is checked again first (exit 2
    with every error when today's pathwatch refuses it)."""
    options = _connection(connection, nats, "config-rollback")

    async def roll_back(store: ConfigStore) -> tuple[Pushed, str]:
        old = await store.at(name, revision)
        loaded = checked_or_exit(old.load)
        pushed = await push_checked(
            store, loaded, old.record.text, name=name, comment=message, rollback_of=revision
        )
        return pushed, loaded.digest

    pushed, digest = _on_nats(options, roll_back, create=False)
    if pushed.unchanged:
        console.print(
            f"unchanged: the latest revision ({pushed.revision}) already holds the config"
            f" of revision {revision} (digest {digest})"
        )
        return
    console.print(
        f"[green]rolled back[/] config {name!r}: revision {pushed.revision} holds the config"
        f" of revision {revision} (digest {digest})"
    )


def _show_from_nats(
    name: str, revision: int | None, connection: Path | None, nats: str | None
) -> StoredConfig:
    """The stored revision `config show --from nats` prints (the latest by default)."""
    options = _connection(connection, nats, "config-show")

    async def fetch(store: ConfigStore) -> StoredConfig:
        found = await store.latest(name) if revision is None else await store.at(name, revision)
        if found is None:
            raise StoreError(f"config {name!r} has never been pushed")
        return found

    try:
        return _on_nats(options, fetch, create=False)
    except DecodeError as exc:
        _fail(EXIT_STORE, f"that revision is not a config record ({exc})")
