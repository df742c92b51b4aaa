"""The probe kinds: one entry per kind, read by everything that depends on the kind.

An entry (`ProbeKind`) says the kind's name (config keys `<name>-probe-profiles`
and a probe's `<name>-probe-profile`), its profile type, the protocol of the
lanes its measurements land in, how those lanes are judged (against the
route's reachability profile, per address against the profile's SLA, or
both), whether an ok attempt's latency is a time to establishment, which SLA
figures apply, and whether one attempt is a single request / reply exchange
that confirm mode can repeat.

Config validation and decoding (`schemas.config`, `schemas.validate`,
`schemas.advice`), the enforcer's route specs, the aggregator's metrics, the
Grafana dashboards and the docs read this table. Adding a probe kind is its
probe module in `agents/probe/`, its profile and entry here, and its docs
(docs/config.md is generated).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlsplit

from msgspec import Meta, field

from schemas.probeprofile import PROBE_ADDRESS, ProbeProfile, SlaMetrics
from schemas.section import Addresses, Port
from schemas.units import key, millis, seconds

#: How a kind's lanes are judged: against the route's reachability profile
#: (error share, time to establishment), or per address against the profile's SLA.
Judgement = Literal["reachability", "sla"]
#: The figures of an SLA (`sla-metrics`).
SlaFigure = Literal["max-loss", "latency-max", "latency-mean", "max-jitter"]
ALL_SLA_FIGURES: tuple[SlaFigure, ...] = ("max-loss", "latency-max", "latency-mean", "max-jitter")


# --- profiles -----------------------------------------------------------------


class IcmpProbeProfile(ProbeProfile, frozen=True, kw_only=True):
    """Router `icmp-probe-profile`: every probe-address must meet the SLA."""

    probe_interval: Annotated[
        float, seconds("Time between the starts of two probe rounds.", ge=1, le=3600)
    ] = 10
    probe_duration: Annotated[
        float,
        seconds(
            "Length of one round; pings are spaced probe-duration / number-of-attempts apart.",
            ge=1,
            le=10,
        ),
    ] = 1

    probe_address: Annotated[Addresses, key(PROBE_ADDRESS)]
    sla_metrics: Annotated[SlaMetrics, key("The SLA every probe address must meet.")] = field(
        default_factory=SlaMetrics
    )

    def sla(self) -> SlaMetrics:
        return self.sla_metrics


class TcpProbeProfile(ProbeProfile, frozen=True, kw_only=True):
    """TCP connect: time-to-establishment per attempt."""

    probe_address: Annotated[Addresses, key(PROBE_ADDRESS)]
    port: Annotated[Port, key("TCP port to connect to.")]
    hold_open: Annotated[
        float,
        millis(
            "How long to keep the connection open after establishment; a reset in that time"
            " is reported as `reset` (peers that accept and then reset). 0 closes at once.",
            ge=0,
            le=10000,
        ),
    ] = 0


class TlsProbeProfile(ProbeProfile, frozen=True, kw_only=True):
    """TLS handshake after TCP establishment."""

    probe_address: Annotated[Addresses, key(PROBE_ADDRESS)]
    port: Annotated[Port, key("TCP port of the TLS server.")] = 443
    server_name: Annotated[
        str | None, key("Server name sent (SNI) and verified; default: the address.")
    ] = None
    accept_self_signed: Annotated[bool, key("Accept any certificate (no verification).")] = False
    ca_file: Annotated[str | None, key("CA file that verifies the server (PEM).")] = None


class UdpProbeProfile(ProbeProfile, frozen=True, kw_only=True):
    """UDP request/response; without `expect` any reply counts."""

    probe_address: Annotated[Addresses, key(PROBE_ADDRESS)]
    port: Annotated[Port, key("UDP port to send to.")]
    payload: Annotated[str, key("Payload of each request.")] = "pathwatch"
    expect: Annotated[
        str | None, key("Text a reply must contain to count as ok; null: any reply.")
    ] = None


class HttpProbeProfile(ProbeProfile, frozen=True, kw_only=True):
    """Router `http-probe-profile`."""

    probe_interval: Annotated[
        float, seconds("Time between the starts of two probe rounds.", ge=1, le=3600)
    ] = 10
    probe_duration: Annotated[
        float,
        seconds(
            "Length of one round; each request times out at probe-duration / number-of-attempts.",
            ge=1,
            le=10,
        ),
    ] = 1

    url: Annotated[str, key("URL requested (GET).")]
    valid_status_code: Annotated[
        list[Annotated[int, Meta(ge=100, le=599)]],
        key("Status codes that count as ok."),
    ] = field(default_factory=lambda: [200])
    up_delay_timer: Annotated[
        float,
        seconds("Router `up-delay-timer`; accepted but not implemented yet.", ge=0, le=3600),
    ] = 0
    accept_self_signed: Annotated[bool, key("Accept any certificate (no verification).")] = False
    sla_metrics: Annotated[SlaMetrics, key("The SLA the URL must meet.")] = field(
        default_factory=SlaMetrics
    )

    def destinations(self) -> list[str]:
        return [self.url]

    def problems(self) -> list[tuple[str, str]]:
        url = urlsplit(self.url)
        if url.scheme in ("http", "https") and url.hostname:
            return []
        return [("url", f"expected an http(s) URL with a host, got {self.url!r}")]

    def sla(self) -> SlaMetrics:
        return self.sla_metrics


class DnsProbeProfile(ProbeProfile, frozen=True, kw_only=True):
    """DNS lookups over UDP: the answer's rcode and records are checked; the latency of
    an ok lookup is its time to establishment."""

    probe_address: Annotated[Addresses, key("Resolvers queried (IP literals; at least one).")]
    port: Annotated[Port, key("UDP port of the resolvers.")] = 53
    query_name: Annotated[str, key("Name looked up.", min_length=1, max_length=253)]
    record_type: Annotated[Literal["A", "AAAA"], key("Record type asked for.")] = "A"
    expect_address: Annotated[
        list[str],
        key(
            "Addresses of which the answer must hold at least one to count as ok; empty:"
            " any record of `record-type`."
        ),
    ] = []

    def problems(self) -> list[tuple[str, str]]:
        found = []
        for address in self.expect_address:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                found.append(("expect-address", f"expected an IP address, got {address!r}"))
        return found


# --- the registry -------------------------------------------------------------


@dataclass(frozen=True)
class ProbeKind:
    """One probe kind, as the contract knows it."""

    #: Config keys `<name>-probe-profiles` and `<name>-probe-profile`; the agent's probe module.
    name: str
    #: How docs and descriptions spell it ("ICMP").
    title: str
    profile: type[ProbeProfile]
    #: Protocol of the lanes its measurements land in.
    protocol: str
    judged_by: frozenset[Judgement]
    #: An ok attempt's latency is a time to establishment (judged, exported as tte).
    time_to_establishment: bool
    sla_figures: tuple[SlaFigure, ...] = ()
    #: One attempt is a single request / reply exchange that confirm mode can repeat.
    confirmable: bool = False

    @property
    def profiles_attr(self) -> str:
        """Attribute of the config holding this kind's profiles by name."""
        return f"{self.name}_probe_profiles"

    @property
    def ref_attr(self) -> str:
        """Attribute of a probe reference naming a profile of this kind."""
        return f"{self.name}_probe_profile"

    @property
    def profiles_key(self) -> str:
        return self.profiles_attr.replace("_", "-")

    @property
    def ref_key(self) -> str:
        return self.ref_attr.replace("_", "-")

    @property
    def reachability(self) -> bool:
        return "reachability" in self.judged_by

    @property
    def per_address_sla(self) -> bool:
        return "sla" in self.judged_by


KINDS: tuple[ProbeKind, ...] = (
    ProbeKind(
        name="icmp",
        title="ICMP",
        profile=IcmpProbeProfile,
        protocol="icmp",
        judged_by=frozenset({"sla"}),
        time_to_establishment=False,
        sla_figures=ALL_SLA_FIGURES,
        confirmable=True,
    ),
    ProbeKind(
        name="tcp",
        title="TCP",
        profile=TcpProbeProfile,
        protocol="tcp",
        judged_by=frozenset({"reachability"}),
        time_to_establishment=True,
        confirmable=True,
    ),
    ProbeKind(
        name="udp",
        title="UDP",
        profile=UdpProbeProfile,
        protocol="udp",
        judged_by=frozenset({"reachability"}),
        time_to_establishment=True,
        confirmable=True,
    ),
    ProbeKind(
        name="tls",
        title="TLS",
        profile=TlsProbeProfile,
        protocol="tls",
        judged_by=frozenset({"reachability"}),
        time_to_establishment=True,
    ),
    ProbeKind(
        name="dns",
        title="DNS",
        profile=DnsProbeProfile,
        protocol="dns",
        judged_by=frozenset({"reachability"}),
        time_to_establishment=True,
        confirmable=True,
    ),
    ProbeKind(
        name="http",
        title="HTTP",
        profile=HttpProbeProfile,
        protocol="http",
        judged_by=frozenset({"reachability", "sla"}),
        time_to_establishment=False,
        sla_figures=ALL_SLA_FIGURES,
    ),
)

BY_NAME: dict[str, ProbeKind] = {kind.name: kind for kind in KINDS}
KIND_NAMES: tuple[str, ...] = tuple(BY_NAME)
#: Protocols of probe lanes, in registry order (the wire adds `link`).
PROBE_PROTOCOLS: tuple[str, ...] = tuple(dict.fromkeys(kind.protocol for kind in KINDS))
#: Protocols whose lanes are judged against a reachability profile (its table keys).
REACHABILITY_PROTOCOLS: tuple[str, ...] = tuple(
    dict.fromkeys(kind.protocol for kind in KINDS if kind.reachability)
)
#: Protocols whose ok latency is a time to establishment.
TTE_PROTOCOLS: frozenset[str] = frozenset(k.protocol for k in KINDS if k.time_to_establishment)
#: Kinds judged per address against their profile's SLA.
SLA_KINDS: tuple[str, ...] = tuple(kind.name for kind in KINDS if kind.per_address_sla)
#: Kinds with a single request / reply exchange (confirm mode).
CONFIRM_KINDS: frozenset[str] = frozenset(kind.name for kind in KINDS if kind.confirmable)


def probe_kind(name: str) -> ProbeKind | None:
    """The kind called `name`, or None (plugins are not in the registry)."""
    return BY_NAME.get(name)


def protocol_titles(protocols: frozenset[str] | tuple[str, ...]) -> str:
    """`tcp, udp, tls` in registry order, for help texts."""
    return ", ".join(p for p in PROBE_PROTOCOLS if p in protocols)
