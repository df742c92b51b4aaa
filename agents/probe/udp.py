"""UDP probe: the payload as a request, any reply (or one containing `expect`) as
the answer (`agents.probe.datagram`).

ICMP errors of the peer are `unreachable`, no reply within the attempt
timeout is `timeout`, a reply not containing `expect` (when set) is
`bad-reply`; otherwise `ok` with the request-to-reply time.
"""

from __future__ import annotations

from agents.probe.base import Target, attempt_timeout, spaced_attempts
from agents.probe.datagram import request_reply
from schemas.probekinds import UdpProbeProfile
from schemas.wire import Measurement


async def exchange_udp(target: Target, profile: UdpProbeProfile, timeout: float) -> Measurement:
    """One request / reply exchange, waiting up to `timeout` s for the reply."""
    if target.port is None:
        raise ValueError("UDP probes need a port")
    got = await request_reply(target, "udp", target.port, profile.payload.encode(), timeout)
    if isinstance(got, Measurement):
        return got
    if profile.expect is not None and profile.expect.encode() not in got.data:
        detail = f"reply {got.data[:64]!r} lacks {profile.expect!r}"
        return target.measurement("udp", got.sent_at, "bad-reply", detail=detail)
    return target.measurement("udp", got.sent_at, "ok", got.elapsed_ms)


async def probe_udp(target: Target, profile: UdpProbeProfile, deadline: float) -> list[Measurement]:
    """number-of-attempts request / reply exchanges with (target.address, target.port)."""
    return await spaced_attempts(
        profile.number_of_attempts,
        profile.probe_duration,
        lambda: exchange_udp(target, profile, attempt_timeout(profile.probe_duration, deadline)),
    )
