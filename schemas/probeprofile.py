"""What every probe profile has (timing, traffic classes, reply timeout, confirm
mode) and the SLA a profile judged per address carries (`sla-metrics`).

The profiles of the probe kinds derive from `ProbeProfile`
(`schemas.probekinds`).
"""

from typing import Annotated, Any, cast

from msgspec import Meta, field

from schemas.section import ConfigSection
from schemas.traffic import TrafficClass
from schemas.units import key, millis, percent, seconds

PROBE_ADDRESS = "Addresses probed (IP literals; at least one)."
_TRAFFIC_CLASSES = "Traffic classes probed, each with its class's DSCP marking."


class LatencySla(ConfigSection, frozen=True, kw_only=True):
    """Latency limits of a probe SLA; 0 disables one limit."""

    max: Annotated[
        float, millis("Largest latency allowed in a window; 0 disables.", ge=0, le=600000)
    ] = 250
    mean: Annotated[
        float, millis("Largest mean latency allowed in a window; 0 disables.", ge=0, le=600000)
    ] = 100


class SlaMetrics(ConfigSection, frozen=True, kw_only=True):
    """The SLA every probe address must meet (router `sla-metrics`)."""

    max_loss: Annotated[float, percent("Largest loss allowed in a window; 100 disables.")] = 10
    latency: Annotated[LatencySla, key("Latency limits.")] = field(default_factory=LatencySla)
    max_jitter: Annotated[
        Annotated[float, Meta(ge=0, le=600000)] | None,
        millis("Largest jitter allowed in a window; null disables."),
    ] = None


class ReplyTimeout(ConfigSection, frozen=True, kw_only=True):
    """Floor and ceiling of a target's reply timeout, SRTT + 4 RTTVAR of its replies
    (RFC 6298): past it a missing reply is suspected and re-probed (confirm mode)."""

    min: Annotated[float, seconds("Shortest reply timeout (the floor).", gt=0, le=10)] = 0.02
    max: Annotated[
        Annotated[float, Meta(gt=0, le=10)] | None,
        seconds(
            "Longest reply timeout (the ceiling, also used before the first reply);"
            " null: probe-duration, which it never exceeds."
        ),
    ] = None


class ProbeProfile(ConfigSection, frozen=True, kw_only=True):
    """Attempts are spaced probe-duration / number-of-attempts apart.

    TCP, TLS and UDP probes have no router counterpart and may run sub-second;
    ICMP and HTTP probes keep the router's ranges (they redeclare the two keys).
    ICMP, UDP and TCP probes of a route with `consecutive-failures` re-probe a
    target every `confirm-interval` after a missed reply until it answers or the
    failures are confirmed (docs/internals.md, "Fast path").
    """

    probe_interval: Annotated[
        float, seconds("Time between the starts of two probe rounds.", ge=0.05, le=3600)
    ] = 10
    number_of_attempts: Annotated[int, key("Attempts per round and address.", ge=1, le=20)] = 4
    probe_duration: Annotated[
        float,
        seconds(
            "Length of one round; attempts are spaced and time out at"
            " probe-duration / number-of-attempts.",
            ge=0.01,
            le=10,
        ),
    ] = 1
    traffic_classes: Annotated[list[TrafficClass], key(_TRAFFIC_CLASSES)] = field(
        default_factory=lambda: ["best-effort"]
    )
    reply_timeout: Annotated[
        ReplyTimeout,
        key(
            "Bounds of the reply timeout derived from each target's smoothed RTT: a reply"
            " missing past it puts the target in confirm mode (ICMP, UDP, TCP)."
        ),
    ] = field(default_factory=ReplyTimeout)
    confirm_interval: Annotated[
        float,
        seconds(
            "Time between re-probes of a target in confirm mode (after a missed reply, until"
            " a reply or consecutive-failures); 0 turns confirm mode off.",
            ge=0,
            le=10,
        ),
    ] = 0.01

    def destinations(self) -> list[str]:
        """What each round probes once per traffic class: the profile's `probe-address`
        list (a kind without one overrides this)."""
        addresses: list[str] = cast(Any, self).probe_address
        return list(addresses)

    def problems(self) -> list[tuple[str, str]]:
        """(key, message) of each semantic error of the profile's own keys (addresses are
        checked by `schemas.validate`); none by default."""
        return []

    def sla(self) -> SlaMetrics | None:
        """The SLA each destination must meet; None for kinds not judged per address."""
        return None
