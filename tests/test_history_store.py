"""The SQLite history on a real file: WAL, batched writes, rollups, retention and queries."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from aggregator.history import FIVE_MINUTES, HOUR, RAW, HistoryStore
from schemas.config import RetentionConfig
from schemas.wire import LaneStats, WindowStats

T0 = 1_800_000_000.0  # a multiple of 3600


def window(start: float, latencies: list[float], timeouts: int = 0) -> WindowStats:
    ok = len(latencies)
    count = ok + timeouts
    lane = LaneStats(
        protocol="icmp",
        traffic_class="best-effort",
        count=count,
        errors=timeouts,
        error_pct=100.0 * timeouts / count,
        outcomes={"ok": ok, "timeout": timeouts} if timeouts else {"ok": ok},
        latency_min_ms=min(latencies),
        latency_max_ms=max(latencies),
        latency_mean_ms=sum(latencies) / ok,
        latency_median_ms=sorted(latencies)[ok // 2],
        latency_p90_ms=max(latencies),
        jitter_ms=1.0,
        loss_pct=100.0 * timeouts / count,
        mos=4.0,
    )
    return WindowStats(
        service="web",
        route="r1",
        window_start=start,
        window_end=start + 5,
        lanes=[lane],
    )


async def test_rollups_retention_and_queries(store_path: Path) -> None:
    store = await HistoryStore(store_path, RetentionConfig(), settle_s=60).open()
    try:
        # two 5-minute buckets: 60 windows in the first, 2 in the second
        for i in range(60):
            store.add(window(T0 + 5 * i, [10.0, 20.0]))
        store.add(window(T0 + 300, [100.0], timeouts=1))
        store.add(window(T0 + 305, [300.0, 100.0]))
        assert store.pending() == 62
        assert await store.flush() == 62
        assert store.pending() == 0

        with sqlite3.connect(store_path) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert raw.execute("SELECT COUNT(*) FROM lane_history").fetchone()[0] == 62

        # the second bucket is not settled yet: only the first is rolled up
        assert await store.rollup(now=T0 + 300 + 59) == 0
        assert await store.rollup(now=T0 + 300 + 61) == 1
        first = await store.query("web", "r1", T0, resolution=FIVE_MINUTES, now=T0 + 400)
        assert len(first) == 1
        assert (first[0].window_start, first[0].window_end) == (T0, T0 + 300)
        assert first[0].count == 120 and first[0].latency_mean_ms == 15.0
        assert (first[0].latency_min_ms, first[0].latency_max_ms) == (10.0, 20.0)

        assert await store.rollup(now=T0 + 3600 + 61) == 2  # bucket 2, then the hour
        five = await store.query("web", "r1", T0, resolution=FIVE_MINUTES, now=T0 + 4000)
        second = next(row for row in five if row.window_start == T0 + 300)
        assert second.count == 4 and second.errors == 1
        assert second.loss_pct == 25.0
        # ok-weighted mean: (100 * 1 + 200 * 2) / 3
        assert second.latency_mean_ms == pytest.approx(500 / 3)
        assert (second.latency_min_ms, second.latency_max_ms) == (100.0, 300.0)
        hourly = await store.query("web", "r1", T0, resolution=HOUR, now=T0 + 4000)
        assert len(hourly) == 1 and hourly[0].count == 124
        assert hourly[0].window_end - hourly[0].window_start == 3600

        # the query picks the resolution from the look-back
        recent = await store.query("web", "r1", T0 + 3000, now=T0 + 3600)
        assert recent == [] or recent[0].resolution == RAW
        older = await store.query("web", "r1", T0, now=T0 + 7200)
        assert {row.resolution for row in older} == {FIVE_MINUTES}

        # retention: raw rows go after an hour, 5-minute rows after a day
        deleted = await store.prune(now=T0 + 3600 + 310 + 1)
        assert deleted == 62
        assert await store.query("web", "r1", 0, resolution=RAW, now=T0) == []
        assert len(await store.query("web", "r1", 0, resolution=FIVE_MINUTES, now=T0)) == 2
        await store.prune(now=T0 + 86400 + 3600 + 1)
        assert await store.query("web", "r1", 0, resolution=FIVE_MINUTES, now=T0) == []
        assert len(await store.query("web", "r1", 0, resolution=HOUR, now=T0)) == 1
    finally:
        await store.close()


async def test_batched_writes_survive_reopening(store_path: Path) -> None:
    store = await HistoryStore(store_path, batch_rows=7).open()
    for i in range(20):
        store.add(window(T0 + 5 * i, [1.0]))
    await store.close()  # close flushes
    reopened = await HistoryStore(store_path).open()
    try:
        rows = await reopened.query("web", "r1", T0, resolution=RAW, now=T0 + 100)
        assert [row.window_start for row in rows] == [T0 + 5 * i for i in range(20)]
        assert reopened.rows_written == 0
    finally:
        await reopened.close()
