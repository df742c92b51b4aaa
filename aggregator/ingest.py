"""Decoding of measurement batches and the counters of what was dropped, by reason.

Nothing here raises: every message is either a `MeasurementBatch` or a drop
reason. Message-level reasons count messages (the whole batch is dropped):

* `size` — over `limits.MAX_MESSAGE_BYTES`; `depth` — nested too deep;
* `json` — not JSON; `version` — unknown schema version;
* `name` — a service, route, agent or node that is not subject-safe;
* `value` — a value out of range: NaN, infinite or negative latency, a
  negative or absurd timestamp (NaN / Infinity literals are not JSON, but
  are counted here, not as `json`);
* `schema` — any other shape error (missing field, unknown outcome, ...);
* `clock` — `sent` further than `limits.MAX_CLOCK_OFFSET_S` from the aggregator's clock;
* `subject` — the batch names another service / route than its subject;
* `unknown-route` — a route that is not in the configuration;
* `duplicate` — the same (agent, seq) again.

Measurement-level reasons count measurements: `late` (its window already
closed), `future` (timestamp too far ahead of the aggregator's clock),
`lane-limit` (kept in the aggregate lane only: its own lane would pass
`limits.MAX_UNLISTED_LANES`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.codec import DecodeError, decode_message
from schemas.wire import MeasurementBatch

MESSAGE_REASONS: tuple[str, ...] = (
    "size",
    "depth",
    "json",
    "version",
    "name",
    "value",
    "schema",
    "clock",
    "subject",
    "unknown-route",
    "duplicate",
)
MEASUREMENT_REASONS: tuple[str, ...] = ("late", "future", "lane-limit")
#: Outputs refused: `skew-alarm-limit`, a clock-skew alarm past `limits.MAX_SKEW_ALARMS`.
OUTPUT_REASONS: tuple[str, ...] = ("skew-alarm-limit",)
REASONS: tuple[str, ...] = MESSAGE_REASONS + MEASUREMENT_REASONS + OUTPUT_REASONS

_NAME_FIELDS = ("`$.service`", "`$.route`", "`$.agent`", "`$.node`")


@dataclass
class IngestCounters:
    """Counters of the ingest path; `dropped` has every reason of REASONS."""

    messages: int = 0
    batches: int = 0
    measurements: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))

    def drop(self, reason: str, amount: int = 1) -> None:
        self.dropped[reason] += amount


def classify(error: DecodeError) -> str:
    """Refine the codec's `schema` reason into `name` / `value` where it applies."""
    if error.reason != "schema":
        return error.reason
    detail = error.detail
    if "regex" in detail or "length" in detail:
        if any(name in detail for name in _NAME_FIELDS):
            return "name"
        return "schema"
    if (
        ">=" in detail
        or "<=" in detail
        or "> " in detail
        or "< " in detail
        or "out of range" in detail
    ):
        return "value"
    return "schema"


def decode_batch(data: bytes) -> MeasurementBatch | str:
    """The batch in `data`, or the reason it is dropped."""
    try:
        return decode_message(data, MeasurementBatch)
    except DecodeError as error:
        if error.reason == "json" and (b"NaN" in data or b"Infinity" in data):
            return "value"
        return classify(error)
    except Exception:  # defensive: a decoder bug must not stop the consumer
        return "schema"
