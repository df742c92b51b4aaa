"""A real `pathwatch up` subprocess for the hostile-input tests, and a stream reader.

`running_up` writes a one-route config (ICMP to 127.0.0.1, 1 s windows) on the
session's nats-server, starts `pathwatch up` on it (optionally with a hook run
in the child before exec, e.g. to lower its file limit) and stops it after.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pathwatch.runtime.bus import Bus
from pathwatch.runtime.embedded import free_port
from schemas.codec import DecodeError, decode_message

T = TypeVar("T")

CONFIG = """
nats: {{url: "{nats}"}}
api: {{listen: "127.0.0.1:{api}"}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
store: {{path: "{store}"}}
icmp-probe-profiles:
  lo: {{probe-interval: 1, number-of-attempts: 2, probe-duration: 1, probe-address: [127.0.0.1]}}
services:
  {service}:
    address: [127.0.0.1/32]
    service-routes:
      r1:
        next-hop: {{node: local, interface: lo}}
        reachability-detection:
          detection-window: 1
          probes: [{{name: ping, icmp-probe-profile: lo}}]
"""


@dataclass
class Up:
    process: subprocess.Popen[bytes]
    api: int
    metrics: int


@contextmanager
def running_up(
    nats_url: str, tmp_path: Path, service: str, before_exec: Callable[[], None] | None = None
) -> Iterator[Up]:
    api, metrics = free_port(), free_port()
    config = tmp_path / "pathwatch.yaml"
    config.write_text(
        CONFIG.format(
            nats=nats_url, api=api, metrics=metrics, store=tmp_path / "pw.db", service=service
        )
    )
    log = (tmp_path / "up.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "pathwatch", "up", "-c", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        preexec_fn=before_exec,
    )
    try:
        yield Up(process, api, metrics)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def stream_messages(bus: Bus, subject: str, kind: type[T]) -> list[T]:
    """Every message of `kind` stored on `subject` (others, such as hostile ones, skipped)."""
    found: list[T] = []
    sub = await bus.js.subscribe(subject, ordered_consumer=True, deliver_policy="all")
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except Exception:
                break
            try:
                found.append(decode_message(msg.data, kind))
            except DecodeError:
                continue
    finally:
        await sub.unsubscribe()
    return found
