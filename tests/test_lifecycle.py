"""Every role and long-running command, as a real process, ends within 2 s of SIGTERM or
SIGINT with status 0 in every phase: connecting (NATS unreachable), running (with a probe
round in flight, so the agent is draining), and reconnecting (server gone).

The roles of one phase run side by side and are signalled one at a time; each role gets
SIGTERM in some phases and SIGINT in others. The time is from the signal to the exit.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from pathwatch.rolecli import STOP_DEADLINE_S
from pathwatch.runtime.embedded import EmbeddedNats
from tests.processes import Process, silent_udp_socket, write_config

#: The README's promise.
STOP_S = STOP_DEADLINE_S

#: Each role's command line ({config} is its config file) and the log lines that say it
#: is running.
ROLES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "agent": (["agent", "-c", "{config}", "--node", "local"], ("connected to",)),
    "aggregator": (["aggregator", "-c", "{config}"], ("aggregator partition",)),
    "enforcer": (["enforcer", "-c", "{config}"], ("ready,",)),
    "api": (["api", "-c", "{config}"], ("API on",)),
    "router": (["router", "-c", "{config}", "--node", "local", "--dry-run"], ("table",)),
    "healer": (
        [
            "healer",
            "-c",
            "{config}",
            "--service",
            "loopback",
            "--route",
            "lo-primary",
            "--source",
            "127.0.0.1",
            "--destination",
            "127.0.0.1",
        ],
        ("request lo-primary",),
    ),
    "alarms-follow": (["alarms", "--follow", "-c", "{config}"], ("connected to",)),
    "grafana-annotate": (["grafana", "annotate", "-c", "{config}"], ("connected to",)),
    "notifier": (
        ["notifier", "-c", "{config}", "--metrics-listen", ""],
        ("notifier hook (webhook) started",),
    ),
    "up": (["up", "-c", "{config}"], ("API on", "aggregator partition", "ready,")),
}
NAMES = list(ROLES)
#: Roles that log in JSON in these tests (the others in text), to check both formats.
JSON_LOGS = {"agent", "enforcer", "router", "alarms-follow", "up"}


def start_roles(directory: Path, nats_url: str, tag: str, udp_port: int) -> list[Process]:
    processes = []
    for name, (args, _) in ROLES.items():
        config = write_config(directory / f"{name}-{tag}", nats_url, udp_port)
        if name == "grafana-annotate":
            config.write_text(
                config.read_text() + "grafana: {url: 'http://127.0.0.1:1', token: test}\n"
            )
        if name == "notifier":
            hook = "{kind: webhook, url: 'http://127.0.0.1:1/hook', secret: s}"
            config.write_text(config.read_text() + f"notifiers: {{hook: {hook}}}\n")
        log_format = "json" if name in JSON_LOGS else "text"
        command = [part.format(config=config) for part in args] + ["--log-format", log_format]
        processes.append(Process.start(f"{name}-{tag}", command, config.parent))
    return processes


def signal_for(index: int, phase: int) -> signal.Signals:
    """SIGTERM and SIGINT alternate over the roles, shifted by phase."""
    return signal.SIGTERM if (index + phase) % 2 == 0 else signal.SIGINT


async def stop_each(processes: list[Process], phase: int) -> dict[str, tuple[float, int]]:
    """Signal one process at a time; its seconds to exit and its status."""
    results = {}
    for index, process in enumerate(processes):
        results[process.name] = await process.stop(signal_for(index, phase))
    return results


def assert_prompt_clean_exits(
    results: dict[str, tuple[float, int]], processes: list[Process]
) -> None:
    print(
        {name: f"{seconds:.2f} s, status {status}" for name, (seconds, status) in results.items()}
    )
    late = {name: r for name, r in results.items() if r[0] > STOP_S or r[1] != 0}
    logs = {p.name: p.log()[-1500:] for p in processes if p.name in late}
    assert not late, f"late or unclean exits {late}:\n{logs}"
    for process in processes:
        assert "Traceback" not in process.log(), process.log()
        assert "threads still running" not in process.log(), process.log()


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


@pytest.fixture
def udp_port() -> Iterator[int]:
    sock = silent_udp_socket()
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    nats = EmbeddedNats(store_dir=tmp_path / "nats").start()
    yield nats
    nats.stop()


async def test_every_role_stops_at_once_while_nats_is_unreachable(
    tmp_path: Path, processes: list[Process], udp_port: int
) -> None:
    processes += start_roles(tmp_path, "nats://127.0.0.1:1", "connecting", udp_port)
    for process in processes:
        await process.wait_log("cannot reach NATS")
    check_log_formats(processes)
    assert_prompt_clean_exits(await stop_each(processes, phase=0), processes)
    for process in processes:
        assert "stopped before NATS was reached" in process.log()


async def test_every_role_stops_promptly_while_running_and_while_reconnecting(
    tmp_path: Path, processes: list[Process], server: EmbeddedNats, udp_port: int
) -> None:
    running = start_roles(tmp_path, server.url, "running", udp_port)
    reconnecting = start_roles(tmp_path, server.url, "reconnecting", udp_port)
    processes += running + reconnecting
    for process, name in zip(processes, NAMES + NAMES, strict=True):
        await process.wait_log(*ROLES[name][1])
    assert_prompt_clean_exits(await stop_each(running, phase=1), running)

    server.stop()
    for process in reconnecting:
        await process.wait_log("disconnected")
    assert_prompt_clean_exits(await stop_each(reconnecting, phase=0), reconnecting)


def check_log_formats(processes: list[Process]) -> None:
    """JSON logs: one object per line with the stable keys; text logs: dated lines,
    never wrapped (the connect warning is longer than 80 columns and stays whole)."""
    for process in processes:
        lines = [line for line in process.log().splitlines() if line.strip()]
        if process.name.split("-connecting")[0] in JSON_LOGS:
            records = [json.loads(line) for line in lines]
            assert all({"ts", "level", "logger", "message"} <= set(r) for r in records), lines
            assert any("cannot reach NATS" in r["message"] for r in records)
        else:
            dated = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 [A-Z]+ \S+: ")
            assert all(dated.match(line) for line in lines), lines
            warning = next(line for line in lines if "cannot reach NATS" in line)
            assert len(warning) > 80 and warning.endswith("retrying every 0.5 s"), warning
