"""Place a flow: its service, traffic class and tracked destination (`FlowClassifier`),
and later its route (`RouteResolver`).

Service: the most specific `address` prefix of this node's services that
holds the flow's destination. Destination: the address itself when the
service lists it as a /32 or /128 (a tracked destination), else "".
Traffic class, by `passive.classifier`: `port` (destination port through
`port-classes`, else `default-class`), `mark` (the conntrack mark masked by
`mark-mask` is a DSCP, matched against `traffic-classes`; conntrack does not
carry the DSCP of the packets itself, so an nftables rule such as
`ct mark set ip dscp` copies it) or `fixed`.

Route (`RouteResolver`, async, cached for `route-cache-ttl` s per
(source, destination)): the only route of the service on this node; else the
route whose next-hop `source-address` is the flow's source; else the kernel's
route lookup (`ip route get <dst> from <src>`, pyroute2) matched against the
routes' next-hop interface and gateway.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agents.passive.events import CtEvent
from agents.passive.tracker import FlowLabel
from schemas.config import PassiveConfig, PathwatchConfig
from schemas.wire import TrafficClass

log = logging.getLogger("pathwatch.agent.passive")

_CACHE_LIMIT = 65536

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class RouteChoice:
    """A route of a service on this node and its next hop."""

    service: str
    route: str
    interface: str | None
    gateway: str | None
    source_address: str | None


@dataclass(frozen=True)
class Egress:
    """What the kernel's route lookup said: output interface name and gateway."""

    interface: str | None
    gateway: str | None


Lookup = Callable[[str, str], Awaitable[Egress | None]]


class FlowClassifier:
    """Service, class and destination of a flow from its NEW event (synchronous)."""

    def __init__(self, config: PathwatchConfig, services: set[str]) -> None:
        self.passive: PassiveConfig = config.passive
        prefixes: list[tuple[Network, str, bool]] = []
        for name in services:
            for text in config.services[name].address:
                network = ipaddress.ip_network(text, strict=False)
                host = network.num_addresses == 1
                prefixes.append((network, name, host))
        prefixes.sort(key=lambda item: item[0].prefixlen, reverse=True)
        self.prefixes = prefixes
        self.class_by_dscp: dict[int, TrafficClass] = {
            config.dscp(name): name for name in config.traffic_classes
        }
        self._placed: dict[str, tuple[str, str] | None] = {}

    def place(self, destination: str) -> tuple[str, str] | None:
        """(service, tracked destination or "") of a destination address, or None."""
        cached = self._placed.get(destination, False)
        if cached is not False:
            return cached  # type: ignore[return-value]
        address = ipaddress.ip_address(destination)
        found: tuple[str, str] | None = None
        for network, service, host in self.prefixes:
            if address.version == network.version and address in network:
                found = (service, destination if host else "")
                break
        if len(self._placed) >= _CACHE_LIMIT:
            self._placed.clear()
        self._placed[destination] = found
        return found

    def traffic_class(self, event: CtEvent) -> TrafficClass:
        passive = self.passive
        if passive.classifier == "port":
            return passive.port_classes.get(event.destination_port, passive.default_class)
        if passive.classifier == "mark":
            dscp = event.mark & passive.mark_mask
            return self.class_by_dscp.get(dscp, passive.default_class)
        return passive.default_class

    def __call__(self, event: CtEvent) -> FlowLabel | None:
        placed = self.place(event.destination)
        if placed is None:
            return None
        service, destination = placed
        return FlowLabel(service, self.traffic_class(event), destination)


class RouteResolver:
    """The route a (service, source, destination) leaves by; see the module docstring."""

    def __init__(
        self,
        routes: list[RouteChoice],
        lookup: Lookup,
        *,
        ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.by_service: dict[str, list[RouteChoice]] = {}
        for choice in routes:
            self.by_service.setdefault(choice.service, []).append(choice)
        self.lookup = lookup
        self.ttl = ttl
        self.clock = clock
        self._egress: dict[tuple[str, str], tuple[float, Egress | None]] = {}
        self.lookups = 0

    async def egress(self, source: str, destination: str) -> Egress | None:
        key = (source, destination)
        now = self.clock()
        cached = self._egress.get(key)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        self.lookups += 1
        try:
            found = await self.lookup(source, destination)
        except Exception as exc:  # a lookup error places nothing, it never stops the source
            log.debug("route lookup %s -> %s failed: %s", source, destination, exc)
            found = None
        if len(self._egress) >= _CACHE_LIMIT:
            self._egress.clear()
        self._egress[key] = (now, found)
        return found

    async def route(self, service: str, source: str, destination: str) -> str | None:
        choices = self.by_service.get(service, [])
        if len(choices) == 1:
            return choices[0].route
        for choice in choices:
            if choice.source_address is not None and choice.source_address == source:
                return choice.route
        if not choices:
            return None
        egress = await self.egress(source, destination)
        if egress is None:
            return None
        for choice in choices:
            if choice.interface is not None and choice.interface != egress.interface:
                continue
            if choice.gateway is not None and choice.gateway != egress.gateway:
                continue
            if choice.interface is None and choice.gateway is None:
                continue
            return choice.route
        return None
