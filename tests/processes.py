"""pathwatch commands as real processes for the lifecycle tests: start one with its own
config and log file, wait for log lines (with deadlines), signal it and time its exit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pathwatch.runtime.configfile import default_config_text
from pathwatch.runtime.embedded import free_port
from tests.conftest import wait_for

#: Seconds a process may take to start (imports on a loaded 2-core machine) and connect.
START_S = 60.0


def pathwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "pathwatch", *args]


def write_config(
    directory: Path, nats_url: str = "embedded", silent_udp_port: int | None = None
) -> Path:
    """The embedded default config with free ports, everything stored under `directory`,
    and `nats.url`; with `silent_udp_port`, a UDP probe of lo-secondary whose 5 s rounds
    never get an answer, so a round is always in flight (the draining phase)."""
    api_port = free_port()
    text = (
        default_config_text()
        .replace("127.0.0.1:8640", f"127.0.0.1:{api_port}")
        .replace("port: 8640", f"port: {api_port}")
        .replace("127.0.0.1:9640", f"127.0.0.1:{free_port()}")
        .replace(".pathwatch/", f"{directory}/.pathwatch/")
        .replace("url: embedded", f'url: "{nats_url}"')
    )
    if silent_udp_port is not None:
        text = text.replace(
            "tcp-probe-profiles:",
            "udp-probe-profiles:\n  silent:\n    probe-interval: 1\n    number-of-attempts: 1\n"
            f"    probe-duration: 5\n    probe-address: [127.0.0.1]\n    port: {silent_udp_port}\n"
            "tcp-probe-profiles:",
        ).replace(
            "            - {name: ping, icmp-probe-profile: lo-ping-2}",
            "            - {name: ping, icmp-probe-profile: lo-ping-2}\n"
            "            - {name: silent, udp-probe-profile: silent}",
        )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "pathwatch.yaml"
    path.write_text(text)
    return path


def silent_udp_socket() -> socket.socket:
    """A bound UDP socket on loopback that never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class Process:
    """One pathwatch command running with its output in `log_path`."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    ended_at: float | None = None

    @classmethod
    def start(
        cls, name: str, args: list[str], directory: Path, env: dict[str, str] | None = None
    ) -> Process:
        """Start `pathwatch *args` in `directory`, with `env` added to this environment."""
        directory.mkdir(parents=True, exist_ok=True)
        log_path = directory / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                pathwatch(*args),
                cwd=directory,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **env} if env else None,
            )
        return cls(name, popen, log_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.popen.poll() is None

    async def wait_log(self, *texts: str, timeout: float = START_S) -> None:
        """Wait until every one of `texts` is in the log; fail at once if the process ends."""
        await wait_for(
            lambda: not self.running() or all(text in self.log() for text in texts),
            timeout,
            what=f"{self.name} to log {texts}",
        )
        assert self.running(), f"{self.name} ended ({self.popen.returncode}):\n{self.log()}"

    async def exit_status(self, timeout: float) -> int:
        """Wait for the exit (polled every 10 ms; `ended_at` is its Unix time)."""
        await wait_for(lambda: not self.running(), timeout, interval=0.01, what=f"{self.name} exit")
        if self.ended_at is None:
            self.ended_at = time.time()
        return self.popen.returncode

    async def stop(self, signum: signal.Signals, timeout: float = 10.0) -> tuple[float, int]:
        """Send `signum`; return the seconds until the process ended and its status."""
        started = time.monotonic()
        self.popen.send_signal(signum)
        try:
            status = await self.exit_status(timeout)
        except AssertionError:
            self.kill()
            return time.monotonic() - started, -1
        return time.monotonic() - started, status

    def kill(self) -> None:
        if self.running():
            self.popen.kill()
            self.popen.wait()
