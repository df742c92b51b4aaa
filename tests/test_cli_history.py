"""`pathwatch history` as a user runs it on a real SQLite store: lane filters, and
tables that fit an 80-column terminal unless `--wide` asks for more."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from aggregator.history import HistoryStore
from schemas.wire import LaneStats, WindowStats

ROOT = Path(__file__).resolve().parent.parent


def lane(protocol: str, traffic_class: str, destination: str = "") -> LaneStats:
    return LaneStats(
        protocol=protocol,  # type: ignore[arg-type]
        traffic_class=traffic_class,  # type: ignore[arg-type]
        destination=destination,
        probe="p" if destination else "",
        count=1200,
        errors=3,
        error_pct=0.25,
        outcomes={"ok": 1197, "timeout": 3},
        latency_min_ms=0.123,
        latency_mean_ms=1234.567,
        latency_median_ms=1000.5,
        latency_p90_ms=2345.678,
        latency_max_ms=9876.543,
        jitter_ms=12.345,
        mos=4.4,
    )


async def test_history_filters_lanes_and_fits_80_columns(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    store = await HistoryStore(path).open()
    now = time.time()
    lanes = [
        lane("tcp", "high"),
        lane("tcp", "high", "127.0.0.1"),
        lane("tcp", "best-effort"),
        lane("icmp", "high"),
    ]
    for start in (now - 20, now - 15, now - 10):
        store.add(WindowStats(service="web", route="r1", window_start=start,
                              window_end=start + 5, lanes=lanes))  # fmt: skip
    await store.flush()
    await store.close()

    def history(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "pathwatch", "history", "--service", "web", "--route", "r1",
             "--store", str(path), "--since", "5m", *args],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
            env={**os.environ, "COLUMNS": "80"},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout

    narrow = history("--protocol", "tcp", "--class", "high")
    assert "tcp/high probe" in narrow and "tcp/high probe p@127.0.0.1" in narrow
    assert "best-effort" not in narrow and "icmp" not in narrow
    assert "6 rows" in narrow
    widths = [len(line.rstrip()) for line in narrow.splitlines()]
    assert max(widths) <= 80, narrow
    assert "9876.54" in narrow and "2345.68" in narrow and "0.12" in narrow  # max, p90, min
    wide = history("--class", "high", "--wide")
    assert "Median" in wide and "Jitter" in wide and "icmp/high probe" in wide
