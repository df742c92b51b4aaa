"""What each notifier did, for `/metrics` (docs/notifier.md, "Metrics").

Every series has the labels `notifier` (its name) and `kind`:

* `pathwatch_notifier_sent_total`: alarm transitions the receiver took (2xx);
* `pathwatch_notifier_retries_total`: attempts after the first of a transition;
* `pathwatch_notifier_failures_total{reason}`: failed attempts, by `timeout`,
  `connection` or `http-<status>`;
* `pathwatch_notifier_dead_letters_total{reason}`: transitions given up on:
  `rejected` (a 4xx), `expired` (past `give-up-after`), `malformed`;
* `pathwatch_notifier_resends_total{outcome}`: Alertmanager re-send requests,
  `sent` or `failed`;
* `pathwatch_notifier_backlog_messages`: alarm messages waiting for this
  notifier (as of its last fetch);
* `pathwatch_notifier_active_alerts`: alarms an Alertmanager notifier keeps
  firing by re-sending them.

State is plain counters updated by the consumer; the collector reads them at
scrape time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass
class NotifierCounters:
    """The counters of one notifier."""

    notifier: str
    kind: str
    sent: int = 0
    retries: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    resends: Counter[str] = field(default_factory=Counter)
    backlog: int = 0
    #: how many alarms it keeps active (Alertmanager only)
    active: Callable[[], int] | None = None


class NotifierCollector(Collector):
    """Prometheus collector over the counters of every notifier of a process."""

    def __init__(self, counters: Iterable[NotifierCounters]) -> None:
        self.counters = list(counters)

    def collect(self) -> Iterator[Metric]:
        labels = ["notifier", "kind"]
        sent = CounterMetricFamily(
            "pathwatch_notifier_sent", "Alarm transitions delivered", labels=labels
        )
        retries = CounterMetricFamily(
            "pathwatch_notifier_retries", "Delivery attempts after the first", labels=labels
        )
        failures = CounterMetricFamily(
            "pathwatch_notifier_failures", "Failed delivery attempts", labels=[*labels, "reason"]
        )
        dead = CounterMetricFamily(
            "pathwatch_notifier_dead_letters",
            "Alarm transitions given up on and dead-lettered",
            labels=[*labels, "reason"],
        )
        resends = CounterMetricFamily(
            "pathwatch_notifier_resends",
            "Re-send requests of active alarms (Alertmanager)",
            labels=[*labels, "outcome"],
        )
        backlog = GaugeMetricFamily(
            "pathwatch_notifier_backlog_messages",
            "Alarm messages waiting for this notifier",
            labels=labels,
        )
        active = GaugeMetricFamily(
            "pathwatch_notifier_active_alerts",
            "Active alarms kept firing by re-sends (Alertmanager)",
            labels=labels,
        )
        for counters in self.counters:
            names = [counters.notifier, counters.kind]
            sent.add_metric(names, counters.sent)
            retries.add_metric(names, counters.retries)
            backlog.add_metric(names, counters.backlog)
            for family, by in ((failures, counters.failures), (dead, counters.dead_letters)):
                for reason, count in sorted(by.items()):
                    family.add_metric([*names, reason], count)
            if counters.active is not None:
                active.add_metric(names, counters.active())
                for outcome in ("sent", "failed"):
                    resends.add_metric([*names, outcome], counters.resends[outcome])
        yield from (sent, retries, failures, dead, resends, backlog, active)
