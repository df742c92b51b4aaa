"""The pieces the lifecycle rests on, in-process: a stop while connecting, the listen
errors, the log formats, the state directory's lock and endpoint, readiness."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import time
from pathlib import Path

import pytest
import yaml

from pathwatch.logs import log_handler
from pathwatch.runtime.bus import Bus, BusOptions, StopRequested
from pathwatch.runtime.listen import ListenError, bind_listener, parse_listen
from pathwatch.runtime.readiness import LoopLiveness, Readiness, nats_connected
from pathwatch.statedir import (
    NoRunningUp,
    StateDirBusy,
    StateDirLock,
    UpEndpoint,
    embedded_auth,
    read_auth,
    read_endpoint,
    remove_endpoint,
    write_endpoint,
)
from tests.conftest import wait_for


async def test_a_stop_while_connecting_ends_the_attempt_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()
    connecting = asyncio.create_task(
        Bus.connect(BusOptions.from_url("nats://127.0.0.1:1", name="unreachable"), stop)
    )
    await wait_for(lambda: "cannot reach NATS" in caplog.text, 5, what="a failed attempt")
    assert not connecting.done()
    started = time.monotonic()
    stop.set()
    with pytest.raises(StopRequested):
        await asyncio.wait_for(connecting, 1.0)
    assert time.monotonic() - started < 0.2


async def test_connect_with_a_stop_event_connects_and_reports_readiness(nats_url: str) -> None:
    bus = await Bus.connect(BusOptions.from_url(nats_url, name="ready"), asyncio.Event())
    readiness = Readiness().require("NATS connection", nats_connected(bus))
    flag = Readiness().require("loaded", lambda: False)
    try:
        assert readiness.report() == (200, {"ready": True, "waiting_for": []})
        assert flag.report() == (503, {"ready": False, "waiting_for": ["loaded"]})
    finally:
        await bus.close()
    assert readiness.waiting_for() == ["NATS connection"]


def test_parse_listen_has_one_meaning() -> None:
    assert parse_listen("127.0.0.1:8640") == ("127.0.0.1", 8640)
    assert parse_listen("[::1]:9640") == ("::1", 9640)
    assert parse_listen(":9640") == ("127.0.0.1", 9640)
    for bad in ("8640", "host:", "host:port", "127.0.0.1:70000"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_listen(bad)


def test_bind_listener_names_the_address_the_cause_and_the_remedy() -> None:
    held = bind_listener("127.0.0.1:0", "api.listen")
    port = held.getsockname()[1]
    try:
        with pytest.raises(ListenError) as taken:
            bind_listener(f"127.0.0.1:{port}", "api.listen")
        assert str(taken.value) == (
            f"cannot listen on 127.0.0.1:{port} (address already in use):"
            " stop the other process or set api.listen"
        )
    finally:
        held.close()
    with pytest.raises(ListenError, match=r"^cannot listen on 'nonsense' .*: fix metrics.listen$"):
        bind_listener("nonsense", "metrics.listen")
    with pytest.raises(
        ListenError, match=r"\(unknown host: .*\): set metrics.listen to an address"
    ):
        bind_listener("no-such-host.invalid:9640", "metrics.listen")


def _record(message: str, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("pathwatch.test", logging.WARNING, __file__, 1, message, (), exc_info)


class _Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_json_log_lines_have_stable_keys_and_carry_the_exception() -> None:
    stream = _Pipe()
    handler = log_handler("json", stream)
    try:
        raise ValueError("boom")
    except ValueError as error:
        handler.emit(_record("with a traceback", error))
    handler.emit(_record("plain"))
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert set(first) == {"ts", "level", "logger", "message", "exception"}
    assert first["exception"].endswith("ValueError: boom")
    assert set(second) == {"ts", "level", "logger", "message"}
    assert (second["level"], second["logger"], second["message"]) == (
        "WARNING",
        "pathwatch.test",
        "plain",
    )
    assert second["ts"].endswith("+00:00") and "T" in second["ts"]


def test_text_log_lines_off_a_terminal_are_dated_and_never_wrapped() -> None:
    stream = _Pipe()
    log_handler("text", stream).emit(_record("x" * 300))
    line = stream.getvalue().rstrip("\n")
    assert "\n" not in line
    date, level, rest = line.split(" ", 2)
    assert date[:4].isdigit() and date.endswith("+00:00")
    assert (level, rest) == ("WARNING", "pathwatch.test: " + "x" * 300)


def test_the_state_directory_lock_refuses_a_second_holder_naming_the_first(
    tmp_path: Path,
) -> None:
    with (
        StateDirLock(tmp_path),
        pytest.raises(StateDirBusy, match=f"in use by another pathwatch up \\(pid {os.getpid()}"),
    ):
        StateDirLock(tmp_path).__enter__()
    with StateDirLock(tmp_path):  # released: free again
        pass


def test_the_endpoint_is_read_back_and_a_stale_or_missing_one_explained(tmp_path: Path) -> None:
    with pytest.raises(NoRunningUp, match="no pathwatch up is running"):
        read_endpoint(tmp_path)
    write_endpoint(tmp_path, UpEndpoint(pid=os.getpid(), nats_url="nats://127.0.0.1:4999"))
    assert read_endpoint(tmp_path).nats_url == "nats://127.0.0.1:4999"
    gone = _finished_pid()
    write_endpoint(tmp_path, UpEndpoint(pid=gone, nats_url="nats://127.0.0.1:4999"))
    with pytest.raises(NoRunningUp, match=f"is stale: .*\\(pid {gone}\\) is not running"):
        read_endpoint(tmp_path)
    remove_endpoint(tmp_path)
    remove_endpoint(tmp_path)  # twice is fine
    assert not (tmp_path / "up.json").exists()


def test_the_embedded_credentials_are_made_once_kept_private_and_required(
    tmp_path: Path,
) -> None:
    auth, server_config = embedded_auth(tmp_path)
    again, _ = embedded_auth(tmp_path)
    assert again == auth and len(auth.password) >= 32
    for path in (tmp_path / "nats-auth.json", server_config):
        assert path.stat().st_mode & 0o777 == 0o600
    (tmp_path / "nats-auth.json").chmod(0o644)  # a copy made with a looser mode
    assert embedded_auth(tmp_path)[0] == auth
    assert (tmp_path / "nats-auth.json").stat().st_mode & 0o777 == 0o600
    assert f'password: "{auth.password}"' in server_config.read_text()
    endpoint = UpEndpoint(pid=os.getpid(), nats_url="nats://x:1", nats_auth=str(tmp_path / "no"))
    with pytest.raises(NoRunningUp, match="cannot read the credentials"):
        read_auth(endpoint)


def _finished_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_listener_sockets_are_ready_for_an_asyncio_server() -> None:
    sock = bind_listener("127.0.0.1:0", "api.listen")
    try:
        assert sock.type == socket.SOCK_STREAM and not sock.getblocking()
    finally:
        sock.close()


async def test_loop_liveness_fails_while_the_event_loop_is_stalled() -> None:
    liveness = LoopLiveness()
    liveness.BEAT_S, liveness.STALL_S = 0.02, 0.2
    liveness.start()
    try:
        await asyncio.sleep(0.05)
        assert liveness.report() == (200, {"status": "ok"})
        time.sleep(0.3)  # noqa: ASYNC251 (blocking the loop is the state under test)
        status, body = liveness.report()
        assert status == 503 and str(body["status"]).startswith("event loop stalled")
        await wait_for(lambda: liveness.report()[0] == 200, 2, what="a beat")
    finally:
        liveness.stop()


def test_the_aggregator_manifest_probes_health_and_readiness_where_metrics_listen() -> None:
    manifest = Path(__file__).parent.parent / "deploy" / "kubernetes" / "30-aggregator.yaml"
    (workload,) = yaml.safe_load_all(manifest.read_text())
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    port = int(args[args.index("--metrics") + 1].rpartition(":")[2])
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
