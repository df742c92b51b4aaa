"""Entry point of `pathwatch`: loads the command modules a command line needs, then runs.

Importing every command module costs a second (each imports its component),
so a command line loads only the module named after its command: `show ...`
loads `pathwatch.commands.show`, `bench probe` loads `bench_probe`,
`probe-state set` loads `probe_state`. When that module does not provide the
command (or the line names no command, or only a group, as for `--help`),
every module is loaded, so a command is always found wherever it lives.
"""

from __future__ import annotations

import importlib
import itertools
import pkgutil
import sys
from collections.abc import Sequence

import typer
from typer.main import get_command_name

import pathwatch.commands
from pathwatch.app import app

_PACKAGE = pathwatch.commands.__name__


def _module_names() -> list[str]:
    return [module.name for module in pkgutil.iter_modules(pathwatch.commands.__path__)]


def _load_commands() -> None:
    """Import every command module (each attaches its commands to `pathwatch.app`)."""
    for name in _module_names():
        importlib.import_module(f"{_PACKAGE}.{name}")


def _resolves(group: typer.Typer, words: Sequence[str]) -> bool:
    """Whether `words` lead through `group` to a registered command (not just a group)."""
    for word in words:
        commands = {
            info.name or get_command_name(info.callback.__name__)
            for info in group.registered_commands
            if info.callback is not None
        }
        if word in commands:
            return True
        groups = {info.name: info.typer_instance for info in group.registered_groups}
        subgroup = groups.get(word)
        if not isinstance(subgroup, typer.Typer):
            return False
        group = subgroup
    return False


def load_commands_for(args: Sequence[str]) -> None:
    """Import the command module `args` name, or every module when that does not find it."""
    words = list(itertools.takewhile(lambda arg: not arg.startswith("-"), args))
    if not words and "--version" in args:
        return
    names = set(_module_names())
    for count in (2, 1):
        candidate = "_".join(words[:count]).replace("-", "_")
        if len(words) >= count and candidate in names:
            importlib.import_module(f"{_PACKAGE}.{candidate}")
            break
    if not _resolves(app, words):
        _load_commands()


def main() -> None:
    load_commands_for(sys.argv[1:])
    app()
