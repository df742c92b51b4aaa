"""Entry point of the `pathwatch` command: loads every command module, then runs."""

import importlib
import pkgutil

import pathwatch.commands
from pathwatch.app import app


def _load_commands() -> None:
    for module in pkgutil.iter_modules(pathwatch.commands.__path__):
        importlib.import_module(f"pathwatch.commands.{module.name}")


def main() -> None:
    _load_commands()
    app()
