"""The aggregator's logic without NATS: ingest a message, close windows, collect outputs.

`Aggregator.handle(subject, data, now)` takes one raw message; the clock is
passed in, so every rule (lateness, future, skew, closing) is testable with an
injected clock. Outputs wait in `fast_out` (consecutive-failure evidence) and
`alarm_out` (clock-skew alarms) until the service publishes them;
`close_due(now)` returns the closed windows; `ripen_due(now)` works out
ahead the lanes of windows that have ended and wait out their lateness.
`reconfigure(config)` takes a new config's routes (`WindowBook.reconfigure`)
and limits.
"""

from __future__ import annotations

import ipaddress

from aggregator.dedupe import Deduplicator
from aggregator.ingest import IngestCounters, decode_batch
from aggregator.partition import PartitionFilter
from aggregator.skew import SkewMonitor
from aggregator.windows import Reconfigured, RouteWindowing, WindowBook, default_lateness
from schemas.config import PathwatchConfig, ServiceRoute
from schemas.fastdetect import agent_confirmed_probes
from schemas.limits import MAX_CLOCK_OFFSET_S, MAX_SKEW_ALARMS, SUBJECT_CACHE_ENTRIES
from schemas.wire import Alarm, EvidenceHops, FastEvidence, WindowStats

SYSTEM_SERVICE = "_system"


def tracked_destinations(addresses: list[str]) -> frozenset[str]:
    """Host addresses (/32, /128 or bare) among a service's `address` list."""
    hosts: set[str] = set()
    for text in addresses:
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            continue
        if network.num_addresses == 1:
            hosts.add(str(network.network_address))
    return frozenset(hosts)


def listed_destinations(config: PathwatchConfig, route: ServiceRoute) -> frozenset[str]:
    """Destinations the route's probes name: probe addresses, URLs, plugin `probe-address`."""
    named: set[str] = {""}
    for ref in route.reachability_detection.probes:
        profile = config.probe_profile(ref)
        if profile is None:
            named.update(a.strip() for a in ref.options.get("probe-address", "").split(","))
        else:
            named.update(profile.destinations())
    return frozenset(named)


def route_windowing(config: PathwatchConfig) -> list[RouteWindowing]:
    """One RouteWindowing per configured route with reachability detection enabled."""
    allowed = config.aggregator.allowed_lateness
    specs: list[RouteWindowing] = []
    for service_name, route_name, service, route in config.routes():
        detection = route.reachability_detection
        window = float(detection.detection_window)
        tracked = tracked_destinations(service.address)
        specs.append(
            RouteWindowing(
                service=service_name,
                route=route_name,
                window_s=window,
                lateness_s=default_lateness(window) if allowed is None else float(allowed),
                consecutive_failures=detection.consecutive_failures,
                tracked=tracked,
                listed_probes=frozenset({"", *(ref.name for ref in detection.probes)}),
                listed_destinations=listed_destinations(config, route) | tracked,
                agent_confirmed=agent_confirmed_probes(config, route),
            )
        )
    return specs


def skew_alarm(agent: str, status: str, skew: float, now: float, raised_at: float) -> Alarm:
    """The clock-skew alarm of an agent (pseudo-service `_system`)."""
    return Alarm(
        id=f"clock-skew.{agent}",
        status="raised" if status == "raise" else "cleared",
        severity="minor",
        service="",
        route="",
        cause="clock-skew",
        reason=f"clock of agent {agent} is {skew:+.3f} s off the aggregator's",
        agent=agent,
        raised_at=raised_at,
        cleared_at=None if status == "raise" else now,
    )


class Aggregator:
    """Windows, dedupe, skew and fast path of one partition."""

    def __init__(
        self,
        config: PathwatchConfig,
        *,
        partition: int = 0,
        partitions: int = 1,
        specs: list[RouteWindowing] | None = None,
    ) -> None:
        self.book = WindowBook(route_windowing(config) if specs is None else specs)
        self.filter = PartitionFilter(partition, partitions)
        self.max_future = config.aggregator.max_future_skew
        self.dedupe = Deduplicator()
        self.skew = SkewMonitor(config.aggregator.skew_alarm, config.aggregator.skew_alarm_after)
        self.counters = IngestCounters()
        self.fast_out: list[FastEvidence] = []
        self.alarm_out: list[Alarm] = []
        self._skew_raised_at: dict[str, float] = {}
        self._owned: dict[str, tuple[str, str] | None] = {}

    def reconfigure(self, config: PathwatchConfig) -> Reconfigured:
        """Follow a new config: its routes (see `WindowBook.reconfigure`) and the future
        and clock-skew limits."""
        self.max_future = config.aggregator.max_future_skew
        self.skew.alarm_threshold_s = config.aggregator.skew_alarm
        return self.book.reconfigure(route_windowing(config))

    def owns(self, subject: str) -> tuple[str, str] | None:
        """(service, route) when the subject belongs to this partition (cached per subject)."""
        try:
            return self._owned[subject]
        except KeyError:
            found = self.filter.route_of(subject)
            if len(self._owned) >= SUBJECT_CACHE_ENTRIES:
                self._owned.clear()
            self._owned[subject] = found
            return found

    def handle(self, subject: str, data: bytes, now: float) -> None:
        """Ingest one raw message; never raises for bad input."""
        counters = self.counters
        counters.messages += 1
        target = self.owns(subject)
        if target is None:
            return
        batch = decode_batch(data)
        if isinstance(batch, str):
            counters.drop(batch)
            return
        if (batch.service, batch.route) != target:
            counters.drop("subject")
            return
        if not -MAX_CLOCK_OFFSET_S <= batch.sent - now <= MAX_CLOCK_OFFSET_S:
            counters.drop("clock")
            return
        route_windows = self.book.route(batch.service, batch.route)
        if route_windows is None:
            counters.drop("unknown-route")
            return
        if self.dedupe.is_duplicate(batch.agent, batch.seq, batch.sent):
            counters.drop("duplicate")
            route_windows.duplicates += 1
            return
        counters.batches += 1
        change = self.skew.observe(batch.agent, batch.sent, now)
        if change is not None:
            self._skew_edge(batch.agent, change, now)
        result = route_windows.add(batch.agent, batch.items, now, self.max_future)
        counters.measurements += result.accepted
        if result.late:
            counters.drop("late", result.late)
        if result.future:
            counters.drop("future", result.future)
        if result.folded:
            counters.drop("lane-limit", result.folded)
        for run in result.failure_runs:
            protocol, traffic_class, source, destination, probe = run.key
            self.fast_out.append(
                FastEvidence(
                    service=batch.service,
                    route=batch.route,
                    ts=now,
                    kind="consecutive-failures",
                    source=source,
                    node=batch.node,
                    agent=batch.agent,
                    protocol=protocol,
                    traffic_class=traffic_class,
                    count=run.count,
                    probe=probe,
                    destination=destination,
                    hops=EvidenceHops(forwarded=now),
                    detail=(
                        f"{run.count} consecutive failures ({run.last_outcome}) on {protocol}"
                        f"/{traffic_class} {source} probe={probe or '-'}"
                        f" destination={destination or '-'}"
                    ),
                )
            )

    def _skew_edge(self, agent: str, change: str, now: float) -> None:
        estimate = self.skew.estimate(agent) or 0.0
        if change == "raise":
            if len(self._skew_raised_at) >= MAX_SKEW_ALARMS:
                self.counters.drop("skew-alarm-limit")
                return
            self._skew_raised_at[agent] = now
            raised_at = now
        elif agent in self._skew_raised_at:
            raised_at = self._skew_raised_at.pop(agent)
        else:
            return  # its raise was refused
        self.alarm_out.append(skew_alarm(agent, change, estimate, now, raised_at))

    def close_due(self, now: float, limit: int | None = None) -> list[WindowStats]:
        return self.book.close_due(now, limit)

    def ripen_due(self, now: float, limit: int | None = None) -> int:
        """Work out ahead the lanes of windows that have ended but wait out their
        lateness (`WindowBook.ripen_due`)."""
        return self.book.ripen_due(now, limit)

    def take_fast(self) -> list[FastEvidence]:
        out, self.fast_out = self.fast_out, []
        return out

    def take_alarms(self) -> list[Alarm]:
        out, self.alarm_out = self.alarm_out, []
        return out
