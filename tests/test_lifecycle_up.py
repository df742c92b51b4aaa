"""`pathwatch up` and its state directory, as a user meets them: its NATS server refuses
a client without the credentials kept there (0600), other commands and roles find the
server and the credentials without a URL, a second `up` on the same directory is refused,
SIGHUP reads the unchanged config again and changes nothing, Ctrl-C ends it within 2 s;
and a taken port is named, with the remedy, by `up`, the API and the aggregator, which
then exit non-zero."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import msgspec
import nats
import nats.errors
import pytest
import yaml

from pathwatch.rolecli import STOP_DEADLINE_S
from pathwatch.runtime.bus import Bus, BusOptions
from pathwatch.statedir import NatsAuth, UpEndpoint
from schemas import subjects
from schemas.codec import encode
from schemas.wire import Alarm
from tests.processes import START_S, Process, write_config


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


def log_time(log: str, text: str) -> float:
    """The Unix time of the first text log line containing `text`."""
    line = next(line for line in log.splitlines() if text in line)
    return datetime.fromisoformat(line.split()[0]).timestamp()


def private_auth(endpoint: UpEndpoint, state: Path) -> NatsAuth:
    """The credentials `up.json` names: in the state directory, readable by us only."""
    assert endpoint.nats_auth is not None
    path = Path(endpoint.nats_auth)
    assert path.parent.resolve() == state.resolve()
    assert path.stat().st_mode & 0o777 == 0o600
    return msgspec.json.decode(path.read_bytes(), type=NatsAuth)


def listen_addresses(config: Path) -> tuple[str, str]:
    data = yaml.safe_load(config.read_text())
    return data["api"]["listen"], data["metrics"]["listen"]


async def test_up_from_start_to_ctrl_c_serves_commands_through_its_state_directory(
    tmp_path: Path, processes: list[Process]
) -> None:
    config = write_config(tmp_path)
    api, metrics = listen_addresses(config)
    up = Process.start("up", ["up", "-c", str(config)], tmp_path)
    processes.append(up)
    await up.wait_log("API on", "aggregator partition", "ready,")
    state = tmp_path / ".pathwatch"
    endpoint = msgspec.json.decode((state / "up.json").read_bytes(), type=UpEndpoint)
    assert endpoint.pid == up.popen.pid
    # the embedded server takes only the credentials made at the first start (0600)
    auth = private_auth(endpoint, state)
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(endpoint.nats_url, allow_reconnect=False, connect_timeout=2)

    async with httpx.AsyncClient(timeout=5) as http:
        for address in (api, metrics):
            ready = await http.get(f"http://{address}/readyz")
            assert (ready.status_code, ready.json()) == (200, {"ready": True, "waiting_for": []})
            assert (await http.get(f"http://{address}/healthz")).status_code == 200

    second = Process.start("second-up", ["up", "-c", str(config)], tmp_path / "second")
    # no URL and no config: the default config's state directory, .pathwatch/ here
    follow = Process.start("follow", ["alarms", "--follow", "--json"], tmp_path)
    # a role started on its own finds the server and its credentials the same way
    router = Process.start(
        "router", ["router", "-c", str(config), "--node", "local", "--dry-run"], tmp_path
    )
    processes += [second, follow, router]
    assert await second.exit_status(START_S) == 1
    assert f"in use by another pathwatch up (pid {up.popen.pid}" in second.log()
    assert "nats-server on" not in second.log(), "the second up must not start a server"

    await follow.wait_log(f"connected to {endpoint.nats_url}", "following pw.alarm.>")
    await router.wait_log(f"connected to {endpoint.nats_url}", "dry-run: would")
    seconds, status = await router.stop(signal.SIGTERM)
    assert status == 0 and seconds < STOP_DEADLINE_S, router.log()
    alarm = Alarm(id=f"lifecycle@{time.time()}", status="raised", service="loopback")
    bus = await Bus.connect(
        BusOptions.from_url(endpoint.nats_url, name="test", user=auth.user, password=auth.password)
    )
    try:
        await bus.js.publish(subjects.alarm("loopback", "lo-primary"), encode(alarm))
    finally:
        await bus.close()
    await follow.wait_log(alarm.id)
    seconds, status = await follow.stop(signal.SIGINT)
    assert status == 0 and seconds < STOP_DEADLINE_S

    up.popen.send_signal(signal.SIGHUP)
    await up.wait_log("SIGHUP: reading the config again")
    async with httpx.AsyncClient(timeout=5) as http:
        assert (await http.get(f"http://{api}/healthz")).status_code == 200

    started = time.monotonic()
    os.killpg(up.popen.pid, signal.SIGINT)  # Ctrl-C signals the terminal's process group
    status = await up.exit_status(10)
    elapsed = time.monotonic() - started
    print(f"Ctrl-C of up: {elapsed:.2f} s")
    assert (status, elapsed < STOP_DEADLINE_S) == (0, True), up.log()
    assert not (state / "up.json").exists()
    assert "did not stop" not in up.log() and "Traceback" not in up.log()


@pytest.fixture
def taken_port() -> Iterator[int]:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    yield blocker.getsockname()[1]
    blocker.close()


TAKEN = [
    ("up", "api.listen"),
    ("up", "metrics.listen"),
    ("api", "api.listen"),
    ("aggregator", "metrics.listen"),
]


async def test_a_taken_port_is_named_with_its_remedy_and_the_process_exits(
    tmp_path: Path, processes: list[Process], nats_url: str, taken_port: int
) -> None:
    """`up` (either port), the API and the aggregator, side by side."""
    for command, setting in TAKEN:
        directory = tmp_path / f"{command}-{setting}"
        config = write_config(directory, "embedded" if command == "up" else nats_url)
        api, metrics = listen_addresses(config)
        taken = api if setting == "api.listen" else metrics
        config.write_text(config.read_text().replace(taken, f"127.0.0.1:{taken_port}"))
        processes.append(Process.start(command, [command, "-c", str(config)], directory))
    expected = (
        "cannot listen on 127.0.0.1:{} (address already in use): stop the other process or set {}"
    )
    statuses = await asyncio.gather(*(process.exit_status(START_S) for process in processes))
    for process, status, (command, setting) in zip(processes, statuses, TAKEN, strict=True):
        # from its first connection to NATS (the parts start then) to its exit
        assert process.ended_at is not None
        seconds = process.ended_at - log_time(process.log(), "connected to")
        print(f"{command} with {setting} taken: status {status} {seconds:.2f} s after connecting")
        assert status == 1 and seconds < 5.0, process.log()
        errors = [line for line in process.log().splitlines() if " ERROR " in line]
        assert any(line.endswith(expected.format(taken_port, setting)) for line in errors)
        assert "Traceback" not in process.log()
        assert "threads still running" not in process.log(), "something was left open"
        if command == "up":
            assert not (process.log_path.parent / ".pathwatch" / "up.json").exists()
