"""ICMP probe with the router's icmp-probe-profile semantics.

`number-of-attempts` echo requests to the target address, spaced
probe-duration / number-of-attempts apart; each waits up to probe-duration
for its reply (never past the deadline). The agent calls it once per
probe-address and traffic class. Pings go through the agent's shared
`IcmpEngine` (one socket per family and binding), never a socket per ping.
"""

from __future__ import annotations

import asyncio
import time

from agents.probe.base import Target, remaining
from agents.probe.icmp_engine import IcmpEngine, PingResult
from schemas.config import IcmpProbeProfile
from schemas.wire import Measurement


async def _attempt(
    engine: IcmpEngine, target: Target, delay: float, timeout: float, deadline: float
) -> PingResult:
    if delay > 0:
        await asyncio.sleep(delay)
    wait = min(timeout, remaining(deadline))
    return await engine.ping(
        target.address,
        timeout=max(wait, 0.001),
        dscp=target.dscp,
        interface=target.interface,
        source=target.source_address,
    )


async def probe_icmp(
    target: Target, profile: IcmpProbeProfile, deadline: float
) -> list[Measurement]:
    """Ping `target.address` number-of-attempts times over probe-duration."""
    engine = target.icmp
    if engine is None:
        raise ValueError("ICMP probes need the agent's IcmpEngine in Target.icmp")
    attempts = profile.number_of_attempts
    spacing = profile.probe_duration / attempts
    started = time.monotonic()
    results = await asyncio.gather(
        *(
            _attempt(
                engine,
                target,
                started + index * spacing - time.monotonic(),
                profile.probe_duration,
                deadline,
            )
            for index in range(attempts)
        )
    )
    return [
        target.measurement(
            "icmp", result.sent_at, result.outcome, result.rtt_ms, detail=result.detail
        )
        for result in results
    ]
