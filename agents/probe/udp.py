"""UDP probe: a connected, pinned, DSCP-marked socket sends the payload and
waits for a reply.

A connected UDP socket receives the ICMP errors of its peer: port or host
unreachable come back as ECONNREFUSED / EHOSTUNREACH and are reported as
`unreachable`. No reply within the attempt timeout is `timeout`; a reply not
containing `expect` (when set) is `bad-reply`; otherwise `ok` with the
request-to-reply time: from right before the send to the kernel's receive
timestamp (SO_TIMESTAMPNS), so the event loop's delays are not in it.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time

from agents.probe.base import Target, attempt_timeout, spaced_attempts
from agents.probe.sockopts import SO_TIMESTAMPNS, pinned_socket, receive_datagram
from schemas.probekinds import UdpProbeProfile
from schemas.wire import Measurement, Outcome

_UNREACHABLE = {
    errno.ECONNREFUSED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EHOSTDOWN,
    errno.ENETDOWN,
}


async def exchange_udp(target: Target, profile: UdpProbeProfile, timeout: float) -> Measurement:
    """One request / reply exchange, waiting up to `timeout` s for the reply."""
    if target.port is None:
        raise ValueError("UDP probes need a port")
    sent_at = time.time()
    try:
        sock = pinned_socket(target, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError as exc:
        return target.measurement("udp", sent_at, "send-failed", detail=str(exc))
    try:
        try:
            sock.connect((target.address, target.port))
            sent_ns = time.time_ns()
            sock.send(profile.payload.encode())
        except OSError as exc:
            outcome: Outcome = "unreachable" if exc.errno in _UNREACHABLE else "send-failed"
            return target.measurement("udp", sent_at, outcome, detail=str(exc))
        try:
            async with asyncio.timeout(timeout):
                reply, received_ns = await receive_datagram(sock)
        except TimeoutError:
            return target.measurement("udp", sent_at, "timeout")
        except OSError as exc:
            failure: Outcome = "unreachable" if exc.errno in _UNREACHABLE else "error"
            return target.measurement("udp", sent_at, failure, detail=str(exc))
        elapsed_ms = max(received_ns - sent_ns, 0) / 1e6
        if profile.expect is not None and profile.expect.encode() not in reply:
            return target.measurement(
                "udp", sent_at, "bad-reply", detail=f"reply {reply[:64]!r} lacks {profile.expect!r}"
            )
        return target.measurement("udp", sent_at, "ok", elapsed_ms)
    finally:
        sock.close()


async def probe_udp(target: Target, profile: UdpProbeProfile, deadline: float) -> list[Measurement]:
    """number-of-attempts request / reply exchanges with (target.address, target.port)."""
    return await spaced_attempts(
        profile.number_of_attempts,
        profile.probe_duration,
        lambda: exchange_udp(target, profile, attempt_timeout(profile.probe_duration, deadline)),
    )
