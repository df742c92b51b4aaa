"""Every command's help, as `pathwatch ... --help` prints it: examples of that very command,
flags shown as flags, and `pathwatch --version`."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from pathwatch.app import app
from pathwatch.cli import _load_commands


def command_paths(
    command: Any, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, click command) of the root, every group and every command under it."""
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from command_paths(sub, (*path, name))


def all_commands() -> list[tuple[tuple[str, ...], Any]]:
    _load_commands()
    return list(command_paths(typer.main.get_command(app)))


def help_text(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"}, color=False)
    assert result.exit_code == 0, result.output
    return result.output


COMMANDS = all_commands()


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"show service-path", "history", "agent", "bench probe", "probe-state set"} <= names
    assert len(names) >= 27


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS], ids=" ".join)
def test_help_has_examples_and_shows_flags_as_flags(path: tuple[str, ...]) -> None:
    text = help_text(path)
    heading = re.search(r"^\s*Examples?:?\s*$|Example:", text, re.MULTILINE)
    assert heading, f"no Examples in `pathwatch {' '.join(path)} --help`:\n{text}"
    shown = re.sub(r"\s+", " ", text[heading.start() :])
    assert f"pathwatch {' '.join(path)}".strip() in shown, text
    for param in dict(COMMANDS)[path].params:
        if getattr(param, "param_type_name", "") == "option" and param.type.name == "boolean":
            assert param.is_flag, f"{param.opts} takes a value"
    assert "<bool>" not in text and "BOOLEAN" not in text, text


def test_version_comes_from_the_package_metadata() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pathwatch", "--version"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"pathwatch {version('pathwatch')}"
