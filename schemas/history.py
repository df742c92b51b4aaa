"""Reading the window history (SQLite table `lane_history`): its resolutions, the
row type `pathwatch history --json` prints, and the one query of a route's rows.

The aggregator writes the table (aggregator/history.py); the API's status page
reads it (enforcer/history_reader.py). Both take the query and the row
conversion from here, so the two never drift apart. Nothing here does I/O.
"""

from collections.abc import Sequence

import msgspec

from schemas.config import RetentionConfig

RAW = 0
FIVE_MINUTES = 300
HOUR = 3600

LANE_COLUMNS = "service, route, protocol, traffic_class, source, destination, probe"

#: Rows of one route at one resolution overlapping [since, until), oldest first.
#: Parameters: resolution, service, route, since, until. The `+` keeps SQLite off
#: the (resolution, window_start) index, which it would otherwise pick and scan
#: every route's rows (seconds on a day of 1,000 routes), for the primary key.
SELECT_ROUTE = (
    f"SELECT resolution, {LANE_COLUMNS}, window_start, window_end, count, errors, ok,"
    " lost, latency_min, latency_max, latency_mean, latency_median, latency_p90, jitter,"
    " mos FROM lane_history WHERE resolution = ? AND service = ? AND route = ?"
    " AND window_end > ? AND +window_start < ?"
    " ORDER BY window_start, protocol, traffic_class, source, destination, probe"
)


class HistoryRow(msgspec.Struct, frozen=True, kw_only=True):
    """One lane over one window or rollup bucket, as `pathwatch history --json` prints it."""

    resolution: int
    service: str
    route: str
    protocol: str
    traffic_class: str
    source: str
    destination: str
    probe: str
    window_start: float
    window_end: float
    count: int
    errors: int
    error_pct: float
    loss_pct: float
    latency_min_ms: float | None
    latency_max_ms: float | None
    latency_mean_ms: float | None
    latency_median_ms: float | None
    latency_p90_ms: float | None
    jitter_ms: float | None
    mos: float | None


def history_row(row: Sequence[object]) -> HistoryRow:
    """A HistoryRow from one result row of SELECT_ROUTE."""
    count = int(row[10])  # type: ignore[call-overload]
    errors = int(row[11])  # type: ignore[call-overload]
    lost = int(row[13])  # type: ignore[call-overload]
    return HistoryRow(
        resolution=int(row[0]),  # type: ignore[call-overload]
        service=str(row[1]),
        route=str(row[2]),
        protocol=str(row[3]),
        traffic_class=str(row[4]),
        source=str(row[5]),
        destination=str(row[6]),
        probe=str(row[7]),
        window_start=float(row[8]),  # type: ignore[arg-type]
        window_end=float(row[9]),  # type: ignore[arg-type]
        count=count,
        errors=errors,
        error_pct=100.0 * errors / count if count else 0.0,
        loss_pct=100.0 * lost / count if count else 0.0,
        latency_min_ms=row[14],  # type: ignore[arg-type]
        latency_max_ms=row[15],  # type: ignore[arg-type]
        latency_mean_ms=row[16],  # type: ignore[arg-type]
        latency_median_ms=row[17],  # type: ignore[arg-type]
        latency_p90_ms=row[18],  # type: ignore[arg-type]
        jitter_ms=row[19],  # type: ignore[arg-type]
        mos=row[20],  # type: ignore[arg-type]
    )


def resolution_for(span_s: float, retention: RetentionConfig) -> int:
    """The finest resolution still kept for a look-back of `span_s` seconds."""
    if span_s <= retention.raw:
        return RAW
    if span_s <= retention.five_minute:
        return FIVE_MINUTES
    return HOUR
