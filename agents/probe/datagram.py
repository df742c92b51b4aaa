"""One request / reply over UDP, the exchange the UDP and DNS probes share.

A connected, pinned, DSCP-marked socket sends the request and waits for a
reply that `accept` takes (others are skipped). A connected UDP socket
receives the ICMP errors of its peer: port or host unreachable come back as
ECONNREFUSED / EHOSTUNREACH and are reported as `unreachable`; no reply within
the timeout is `timeout`. The reply's time runs from right before the send to
the kernel's receive timestamp (SO_TIMESTAMPNS), so the event loop's delays
are not in it.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from agents.probe.base import Target
from agents.probe.sockopts import SO_TIMESTAMPNS, kernel_time_ns, pinned_socket
from schemas.wire import Measurement, Outcome, Protocol

_UNREACHABLE = {
    errno.ECONNREFUSED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EHOSTDOWN,
    errno.ENETDOWN,
}


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _receive(sock: socket.socket) -> tuple[bytes, int]:
    """The next datagram on non-blocking `sock` (SO_TIMESTAMPNS set) and the kernel's
    time of its arrival (ns)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            data, ancdata, _flags, _peer = sock.recvmsg(65535, 64)
            return data, kernel_time_ns(ancdata)
        except (BlockingIOError, InterruptedError):
            pass
        readable: asyncio.Future[None] = loop.create_future()
        loop.add_reader(sock.fileno(), _wake, readable)
        try:
            await readable
        finally:
            loop.remove_reader(sock.fileno())


async def _reply(sock: socket.socket, accept: Callable[[bytes], bool]) -> tuple[bytes, int]:
    """The first datagram `accept` takes, and its arrival time (ns)."""
    while True:
        data, received_ns = await _receive(sock)
        if accept(data):
            return data, received_ns


@dataclass(frozen=True, slots=True)
class Reply:
    """The reply of an exchange: its bytes, when the exchange started (Unix s) and the
    request-to-reply time (ms)."""

    data: bytes
    sent_at: float
    elapsed_ms: float


def _any(data: bytes) -> bool:
    return True


async def request_reply(
    target: Target,
    protocol: Protocol,
    port: int,
    request: bytes,
    timeout: float,
    accept: Callable[[bytes], bool] = _any,
) -> Reply | Measurement:
    """The reply, or the Measurement of the failure."""
    sent_at = time.time()
    try:
        sock = pinned_socket(target, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError as exc:
        return target.measurement(protocol, sent_at, "send-failed", detail=str(exc))
    try:
        try:
            sock.connect((target.address, port))
            sent_ns = time.time_ns()
            sock.send(request)
        except OSError as exc:
            outcome: Outcome = "unreachable" if exc.errno in _UNREACHABLE else "send-failed"
            return target.measurement(protocol, sent_at, outcome, detail=str(exc))
        try:
            async with asyncio.timeout(timeout):
                reply, received_ns = await _reply(sock, accept)
        except TimeoutError:
            return target.measurement(protocol, sent_at, "timeout")
        except OSError as exc:
            failure: Outcome = "unreachable" if exc.errno in _UNREACHABLE else "error"
            return target.measurement(protocol, sent_at, failure, detail=str(exc))
        return Reply(reply, sent_at, max(received_ns - sent_ns, 0) / 1e6)
    finally:
        sock.close()
