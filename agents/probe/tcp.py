"""TCP connect probe: time-to-establishment of a pinned, DSCP-marked connect.

Outcomes: `ok` (latency = SYN to established), `refused` (RST answering the
SYN), `reset` (reset within `hold-open` ms after establishment: peers that
accept and then reset), `timeout`, `unreachable` (ICMP host / network
unreachable), `send-failed` (the SYN could not leave: local errors).
Attempts are spaced probe-duration / number-of-attempts apart and each may
take up to probe-duration.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time

from agents.probe.base import Target, attempt_timeout, remaining, spaced_attempts
from agents.probe.sockopts import pinned_socket
from schemas.probekinds import TcpProbeProfile
from schemas.wire import Measurement, Outcome

_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
_RESET = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}


def outcome_of(exc: OSError) -> Outcome:
    """Outcome of a socket error raised while connecting or talking."""
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return "refused"
    if isinstance(exc, ConnectionResetError) or exc.errno in _RESET:
        return "reset"
    if exc.errno in _UNREACHABLE:
        return "unreachable"
    if isinstance(exc, TimeoutError) or exc.errno == errno.ETIMEDOUT:
        return "timeout"
    return "send-failed"


async def connect(target: Target, timeout: float) -> socket.socket:
    """A connected, pinned TCP socket; raises OSError / TimeoutError."""
    if target.port is None:
        raise ValueError("TCP probes need a port")
    loop = asyncio.get_running_loop()
    sock = pinned_socket(target, socket.SOCK_STREAM)
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (target.address, target.port))
    except BaseException:
        sock.close()
        raise
    return sock


async def _held_open(sock: socket.socket, hold_s: float) -> OSError | None:
    """Watch the connection for `hold_s`; the error that ended it early, if any."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(hold_s):
            # data or an orderly close (b"") both mean the peer did not reset
            await loop.sock_recv(sock, 1)
            return None
    except TimeoutError:
        return None
    except OSError as exc:
        return exc


async def exchange_tcp(
    target: Target, profile: TcpProbeProfile, timeout: float, hold_until: float | None = None
) -> Measurement:
    """One connect waiting up to `timeout` s, then hold-open (never past `hold_until`, a
    monotonic time, when given)."""
    sent_at = time.time()
    started = time.perf_counter()
    try:
        sock = await connect(target, timeout)
    except TimeoutError:
        return target.measurement("tcp", sent_at, "timeout")
    except OSError as exc:
        return target.measurement("tcp", sent_at, outcome_of(exc), detail=str(exc))
    elapsed_ms = (time.perf_counter() - started) * 1000
    try:
        pending = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if pending:
            error = OSError(pending, f"socket error {errno.errorcode.get(pending, pending)}")
            return target.measurement("tcp", sent_at, outcome_of(error), detail=str(error))
        if profile.hold_open > 0:
            hold = profile.hold_open / 1000
            if hold_until is not None:
                hold = min(hold, remaining(hold_until))
            failure = await _held_open(sock, hold)
            if failure is not None:
                return target.measurement("tcp", sent_at, outcome_of(failure), detail=str(failure))
    finally:
        sock.close()
    return target.measurement("tcp", sent_at, "ok", elapsed_ms)


async def probe_tcp(target: Target, profile: TcpProbeProfile, deadline: float) -> list[Measurement]:
    """number-of-attempts TCP connects to (target.address, target.port)."""
    return await spaced_attempts(
        profile.number_of_attempts,
        profile.probe_duration,
        lambda: exchange_tcp(
            target, profile, attempt_timeout(profile.probe_duration, deadline), deadline
        ),
    )
