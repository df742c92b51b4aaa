"""Per-round pre-aggregation of passive session outcomes.

Every session stays one `Measurement` (so the aggregator's counts, error
rates, median and p90 stay exact: nothing is summarised away), but the
sessions of one route in one round travel together: one `MeasurementBatch`
per route per round, split into chunks of at most `max_batch_items` so a
message stays well under the NATS payload limit. Thousands of sessions a
second become a few messages a second per route.
"""

from __future__ import annotations

from collections.abc import Iterator

from agents.passive.tracker import SessionOutcome
from schemas.wire import Measurement, Protocol


def to_measurement(outcome: SessionOutcome) -> Measurement:
    """The wire form of one session (source `passive`)."""
    protocol: Protocol = "tcp" if outcome.protocol == "tcp" else "udp"
    return Measurement(
        ts=outcome.ts,
        protocol=protocol,
        traffic_class=outcome.label.traffic_class,
        destination=outcome.label.destination,
        source="passive",
        outcome=outcome.outcome,
        latency_ms=round(outcome.latency_ms, 6) if outcome.latency_ms is not None else None,
    )


def chunks(items: list[Measurement], size: int) -> Iterator[list[Measurement]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class RoundBuffer:
    """Session outcomes collected since the last round."""

    def __init__(self) -> None:
        self._outcomes: list[SessionOutcome] = []

    def __len__(self) -> int:
        return len(self._outcomes)

    def add(self, outcome: SessionOutcome) -> None:
        self._outcomes.append(outcome)

    def extend(self, outcomes: list[SessionOutcome]) -> None:
        self._outcomes.extend(outcomes)

    def take(self) -> list[SessionOutcome]:
        """Everything collected so far; the buffer starts empty again."""
        taken, self._outcomes = self._outcomes, []
        return taken
