"""What `pathwatch show ...` imports: only its own command module and what the CLI
itself needs, never a component, NATS or the web stack (each costs tenths of a second;
the figure is measured by hand with a same-run baseline, README's Performance table)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Modules `show` must not load: the components, NATS, the API server stack, config parsing.
HEAVY = (
    "agents",
    "aggregator",
    "enforcer",
    "nats",
    "litestar",
    "uvicorn",
    "httpx",
    "msgspec",
    "yaml",
    "pathwatch.runtime.bus",
    "pathwatch.rolecli",
    "pathwatch.runtime.configfile",
)

PROBE = """
import json, sys
from pathwatch.cli import load_commands_for
from pathwatch.app import show_app
load_commands_for(sys.argv[1:])
print(json.dumps({
    "modules": sorted(sys.modules),
    "show": sorted(info.name for info in show_app.registered_commands),
}))
"""


def loaded_by(*args: str) -> dict[str, list[str]]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "args",
    [
        ("show", "service-path", "--json"),
        ("show", "load-balancer", "--help"),
        ("show", "alarms", "--check"),
    ],
    ids=" ".join,
)
def test_show_loads_only_the_show_module(args: tuple[str, ...]) -> None:
    loaded = loaded_by(*args)
    assert loaded["show"] == ["alarms", "load-balancer", "service-path"]
    heavy = [m for m in loaded["modules"] if m.split(".")[0] in HEAVY or m in HEAVY]
    assert not heavy, f"`pathwatch {' '.join(args)}` imports {heavy}"
    commands = [m for m in loaded["modules"] if m.startswith("pathwatch.commands.")]
    assert commands == ["pathwatch.commands.show"]


def test_a_command_outside_its_namesake_module_still_loads() -> None:
    # `api` lives in pathwatch.commands.enforcer: the loader falls back to every module
    loaded = loaded_by("api", "--help")
    assert "pathwatch.commands.enforcer" in loaded["modules"]
