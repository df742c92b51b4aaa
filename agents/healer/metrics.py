"""The healer's Prometheus metrics, read from the running `Healer` at scrape time.

Every series carries the `service` label. Counters (`_total`):
`pathwatch_healer_reselects_total`, `_rerequests_total`, `_failed_heals_total`,
`_heal_commands_total`, `_liveness_checks_total{result="pass"|"fail"}` (results
applied to the current connection), `_liveness_stale_results_total` (results about
a previous connection, discarded, or abandoned in flight after a move) and
`_malformed_messages_total{reason}`. Gauges:
`pathwatch_healer_route{route}` (1 for the route the client is on, 0 for the
service's other routes), `_control_plane_up`, `_data_plane_up` (0/1) and
`_backoff_remaining_seconds`. Nothing touches prometheus objects while healing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pathwatch.runtime.metrics_http import MetricsHttpServer

if TYPE_CHECKING:
    from agents.healer.healer import Healer

PREFIX = "pathwatch_healer"


class HealerCollector(Collector):
    """Builds the healer's metric families from its state on each scrape."""

    def __init__(self, healer: Healer) -> None:
        self.healer = healer

    def collect(self) -> Iterator[Metric]:
        yield from self._counters()
        yield from self._liveness()
        yield from self._gauges()

    def _counter(self, name: str, text: str, value: float) -> Metric:
        family = CounterMetricFamily(f"{PREFIX}_{name}", text, labels=("service",))
        family.add_metric([self.healer.service], value)
        return family

    def _gauge(self, name: str, text: str, value: float) -> Metric:
        family = GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=("service",))
        family.add_metric([self.healer.service], value)
        return family

    def _counters(self) -> Iterator[Metric]:
        stats = self.healer.stats
        yield self._counter("reselects", "Moves of the client onto another route", stats.reselects)
        yield self._counter(
            "rerequests",
            "Re-requests of the same route after a control-plane outage",
            stats.rerequests,
        )
        yield self._counter(
            "failed_heals",
            "Reselects that found no route or whose hook failed",
            stats.failed_heals,
        )
        yield self._counter(
            "heal_commands", "Heal commands naming the client's route", stats.heal_commands
        )
        malformed = CounterMetricFamily(
            f"{PREFIX}_malformed_messages",
            "Messages dropped, by reason",
            labels=("service", "reason"),
        )
        for reason, value in self.healer.malformed().items():
            malformed.add_metric([self.healer.service, reason], value)
        yield malformed

    def _liveness(self) -> Iterator[Metric]:
        stats = self.healer.stats
        checks = CounterMetricFamily(
            f"{PREFIX}_liveness_checks",
            "Liveness results applied to the current connection, by result",
            labels=("service", "result"),
        )
        checks.add_metric([self.healer.service, "pass"], stats.liveness_passes)
        checks.add_metric([self.healer.service, "fail"], stats.liveness_failures)
        yield checks
        yield self._counter(
            "liveness_stale_results",
            "Liveness results about a previous connection, discarded or abandoned in flight",
            self.healer.stale_results(),
        )

    def _gauges(self) -> Iterator[Metric]:
        healer = self.healer
        route = GaugeMetricFamily(
            f"{PREFIX}_route",
            "1 for the route the client is on, 0 for the service's other routes",
            labels=("service", "route"),
        )
        current = healer.route
        for name in healer.service_config.service_routes:
            route.add_metric([healer.service, name], 1.0 if name == current else 0.0)
        yield route
        yield self._gauge(
            "control_plane_up", "1 while the control plane is up", float(healer.control_up())
        )
        yield self._gauge(
            "data_plane_up", "1 while the current route's data plane works", float(healer.data_up())
        )
        yield self._gauge(
            "backoff_remaining_seconds",
            "Seconds until a reselect may be tried again (0: no backoff)",
            healer.policy.backoff_remaining(),
        )


def healer_registry(healer: Healer) -> CollectorRegistry:
    """A registry holding only the healer's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HealerCollector(healer))
    return registry


def serve_metrics(healer: Healer, listen: str) -> MetricsHttpServer:
    """`/metrics` of `healer` on `listen` (`host:port`) until `.stop()`."""
    return MetricsHttpServer(healer_registry(healer)).start(listen, "--metrics-listen")
