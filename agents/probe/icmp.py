"""ICMP probe with the router's icmp-probe-profile semantics.

`number-of-attempts` echo requests to the target address, spaced
probe-duration / number-of-attempts apart; each waits up to probe-duration
for its reply (never past the deadline). The agent calls it once per
probe-address and traffic class. Pings go through the agent's shared
`IcmpEngine` (one socket per family and binding), never a socket per ping.
"""

from __future__ import annotations

from agents.probe.base import Target, attempt_timeout, spaced_attempts
from agents.probe.icmp_engine import open_icmp_socket
from agents.probe.sockopts import family_of
from schemas.probekinds import IcmpProbeProfile
from schemas.wire import Measurement


async def exchange_icmp(target: Target, profile: IcmpProbeProfile, timeout: float) -> Measurement:
    """One echo request through the agent's engine, waiting up to `timeout` s."""
    engine = target.icmp
    if engine is None:
        raise ValueError("ICMP probes need the agent's IcmpEngine in Target.icmp")
    result = await engine.ping(
        target.address,
        timeout=max(timeout, 0.001),
        dscp=target.dscp,
        interface=target.interface,
        source=target.source_address,
    )
    return target.measurement(
        "icmp", result.sent_at, result.outcome, result.rtt_ms, detail=result.detail
    )


async def probe_icmp(
    target: Target, profile: IcmpProbeProfile, deadline: float
) -> list[Measurement]:
    """Ping `target.address` number-of-attempts times over probe-duration."""
    if target.icmp is None:
        raise ValueError("ICMP probes need the agent's IcmpEngine in Target.icmp")
    return await spaced_attempts(
        profile.number_of_attempts,
        profile.probe_duration,
        lambda: exchange_icmp(target, profile, attempt_timeout(profile.probe_duration, deadline)),
    )


def preflight_icmp(targets: list[Target]) -> None:
    """Fail at start (IcmpUnavailable) when the agent cannot open an ICMP socket of a
    family its targets need."""
    for family in {family_of(target.address): None for target in targets}:
        engine = targets[0].icmp
        sock, _raw = open_icmp_socket(family, None if engine is None else engine.privileged)
        sock.close()
