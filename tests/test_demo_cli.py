"""`pathwatch demo` end to end (root, real namespaces), its refusal without root, and
the healer command's argument checks."""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from typer.testing import CliRunner

from pathwatch.app import app
from pathwatch.cli import _load_commands
from tests.netns import requires_iptables, requires_nft, requires_root

PYTHON = sys.executable


def pathwatch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    code = "import sys; from pathwatch.cli import main; sys.argv[0] = 'pathwatch'; main()"
    return subprocess.run(
        [PYTHON, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "COLUMNS": "200"},
    )


@requires_root
@requires_nft
@requires_iptables
def test_demo_moves_traffic_to_path_2_and_back_and_cleans_up() -> None:
    result = pathwatch("demo", "--hold-down", "1")
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    out = result.stdout
    for fault in ("link down", "nftables blackhole", "30 % random loss"):
        assert f"FAULT: {fault}" in out
    assert out.count("client kernel route to the service -> path 2") >= 3
    assert out.count("client kernel route to the service -> path 1") >= 4
    assert "healer: reselect path-2" in out
    assert "done: traffic moved to path 2 and back three times" in out
    names = next(line for line in out.splitlines() if line.startswith("namespaces:"))
    client = names.split()[1].rstrip(",")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert client not in listed


@contextlib.contextmanager
def unprivileged_euid(uid: int = 65534) -> Iterator[None]:
    """Run the block with a real unprivileged effective uid, restored to 0 after it.

    Only the filesystem uid (Linux's own uid for file access, set to the effective
    uid by seteuid) goes back to 0, in this thread: code imported lazily in the
    block must still be readable when the checkout, its venv or the interpreter
    lives in a directory only root can enter (a clone under /root or `mktemp -d`).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    os.seteuid(uid)
    try:
        libc.setfsuid(0)
        assert libc.setfsuid(-1) == 0, "could not keep the filesystem uid 0"  # -1: query
        yield
    finally:
        os.seteuid(0)


@requires_root
def test_demo_refuses_without_root() -> None:
    _load_commands()
    runner = CliRunner()
    with unprivileged_euid():
        assert os.geteuid() != 0
        result = runner.invoke(app, ["demo"])
    assert result.exit_code == 1, result.output
    assert "run it as root" in result.output


def test_healer_refuses_an_unknown_route(tmp_path: Path) -> None:
    config = tmp_path / "pathwatch.yaml"
    config.write_text(
        'nats: {url: "nats://127.0.0.1:4222"}\n'
        "services:\n"
        "  web:\n"
        "    address: [127.0.0.1/32]\n"
        "    service-routes:\n"
        "      r1: {next-hop: {node: n1, interface: lo}}\n"
    )
    result = pathwatch(
        "healer", "-c", str(config), "--service", "web", "--route", "nope", timeout=60
    )
    assert result.returncode == 2
    assert "web.nope: no such service route" in result.stderr
