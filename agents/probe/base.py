"""The one probe signature shared by every probe kind, like blackbox_exporter's probers.

A probe is an async function `(target, profile, deadline) -> list[Measurement]`:

* `target` (`Target`) is one destination of one probe of one route, already
  resolved for one traffic class: the address (an IP, or the URL for HTTP),
  the port, the DSCP of the class, and the route pinning (the next-hop
  interface to bind with SO_BINDTODEVICE and / or the source address);
* `profile` is the probe profile from the config (or a `PluginProfile`);
* `deadline` is an absolute `time.monotonic()` value by which the probe
  returns, whatever happens.

It returns one `Measurement` per attempt (protocol, traffic class,
destination, source `probe`, probe name, outcome, latency for `ok`).
A probe never raises for network faults: they are outcomes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from agents.probe.icmp_engine import IcmpEngine
from schemas.wire import Measurement, Outcome, Protocol, TrafficClass


@dataclass(frozen=True)
class Target:
    """One destination of one probe, for one traffic class, pinned to one route."""

    address: str
    probe: str = ""
    traffic_class: TrafficClass = "best-effort"
    dscp: int = 0
    port: int | None = None
    interface: str | None = None
    source_address: str | None = None
    #: The agent's shared ICMP engine (ICMP probes and plugins that ping).
    icmp: IcmpEngine | None = None

    def measurement(
        self,
        protocol: Protocol,
        ts: float,
        outcome: Outcome,
        latency_ms: float | None = None,
        **extra: Any,
    ) -> Measurement:
        """A Measurement of this target; latency is kept only for `ok`."""
        return Measurement(
            ts=ts,
            protocol=protocol,
            traffic_class=self.traffic_class,
            destination=self.address,
            source="probe",
            probe=self.probe,
            outcome=outcome,
            latency_ms=round(latency_ms, 6) if outcome == "ok" and latency_ms is not None else None,
            **extra,
        )


@dataclass(frozen=True)
class PluginProfile:
    """What a plugin probe gets as its profile: the probe reference's options."""

    name: str
    options: dict[str, str] = field(default_factory=dict)
    probe_interval: float = 10.0
    probe_duration: float = 1.0
    number_of_attempts: int = 1
    traffic_classes: list[TrafficClass] = field(default_factory=lambda: ["best-effort"])
    probe_address: list[str] = field(default_factory=list)
    port: int | None = None

    def destinations(self) -> list[str]:
        """What each round probes once per traffic class, like a profile's."""
        return list(self.probe_address)


ProbeFunc = Callable[[Target, Any, float], Awaitable[list[Measurement]]]
#: One request / reply of a probe kind: `(target, profile, timeout_s) -> Measurement`.
#: The kinds that have one (ICMP, UDP, TCP) can be confirmed by re-probes
#: (`agents.probe.watch`); a probe of such a kind is its exchange, spaced.
ExchangeFunc = Callable[[Target, Any, float], Awaitable[Measurement]]

#: A kind's check at start and reload that its targets can be probed at all (raises if not).
PreflightFunc = Callable[[list[Target]], None]

T = TypeVar("T")


def remaining(deadline: float) -> float:
    """Seconds left until `deadline` (never negative)."""
    return max(deadline - time.monotonic(), 0.0)


async def spaced_attempts(
    attempts: int, duration: float, attempt: Callable[[], Awaitable[T]]
) -> list[T]:
    """Run `attempt` `attempts` times, started duration / attempts apart, concurrently."""
    spacing = duration / attempts
    started = time.monotonic()

    async def one(index: int) -> T:
        delay = started + index * spacing - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        return await attempt()

    return list(await asyncio.gather(*(one(index) for index in range(attempts))))


def attempt_timeout(duration: float, deadline: float) -> float:
    """How long one attempt started now may wait: probe-duration, never past `deadline`."""
    return min(duration, remaining(deadline))
