"""Window statistics against a plain reference implementation (hypothesis), and the E-model."""

from __future__ import annotations

import itertools
import random
import statistics
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator import lanes as lanes_module
from aggregator.stats import mos
from aggregator.windows import RouteWindowing, WindowBook
from schemas.wire import LaneStats, Measurement

START = 1_000_000.0
WINDOW = 5.0
LOSS = {"timeout", "send-failed", "timeout-before-establishment"}

measurements = st.builds(
    Measurement,
    ts=st.floats(min_value=START, max_value=START + WINDOW - 0.001),
    protocol=st.sampled_from(["icmp", "tcp"]),
    traffic_class=st.sampled_from(["high", "best-effort"]),
    destination=st.sampled_from(["127.0.0.1", "127.0.0.2"]),
    source=st.sampled_from(["probe", "passive"]),
    probe=st.sampled_from(["", "ping"]),
    outcome=st.sampled_from(["ok", "ok", "ok", "timeout", "refused", "send-failed"]),
    latency_ms=st.one_of(st.none(), st.floats(min_value=0, max_value=10_000)),
)


def reference_p90(values: list[float]) -> float:
    """Smallest sample with at least 90 % of the samples at or below it."""
    n = len(values)
    for candidate in sorted(values):
        if sum(1 for v in values if v <= candidate) * 10 >= 9 * n:
            return candidate
    raise AssertionError("unreachable")


def reference_lane(items: list[Measurement]) -> dict[str, object]:
    ok = [m for m in items if m.outcome == "ok" and m.latency_ms is not None]
    latencies = [m.latency_ms for m in ok if m.latency_ms is not None]
    diffs: list[float] = []
    for series_key in {(m.probe, m.destination) for m in ok}:
        series = sorted(
            (m for m in ok if (m.probe, m.destination) == series_key), key=lambda m: m.ts
        )
        for before, after in itertools.pairwise(series):
            assert before.latency_ms is not None and after.latency_ms is not None
            diffs.append(abs(after.latency_ms - before.latency_ms))
    errors = sum(1 for m in items if m.outcome != "ok")
    return {
        "count": len(items),
        "errors": errors,
        "error_pct": 100.0 * errors / len(items),
        "loss_pct": 100.0 * sum(1 for m in items if m.outcome in LOSS) / len(items),
        "outcomes": dict(Counter(m.outcome for m in items)),
        "min": min(latencies) if latencies else None,
        "max": max(latencies) if latencies else None,
        "mean": statistics.fmean(latencies) if latencies else None,
        "median": statistics.median(latencies) if latencies else None,
        "p90": reference_p90(latencies) if latencies else None,
        "jitter": statistics.fmean(diffs) if diffs else None,
    }


def close_one_window(
    items: list[Measurement], listed: frozenset[str] = frozenset({""})
) -> list[LaneStats]:
    spec = RouteWindowing("web", "r1", WINDOW, 1.0, 0, frozenset({"127.0.0.1"}))
    book = WindowBook([replace(spec, listed_destinations=listed)])
    route = book.route("web", "r1")
    assert route is not None
    result = route.add("agent-1", items, now=START, max_future=3600)
    assert result.accepted == len(items)
    closed = book.close_due(START + WINDOW + 1.0)
    assert len(closed) == 1
    assert closed[0].window_start == START and closed[0].window_end == START + WINDOW
    return closed[0].lanes


def approx(value: object) -> object:
    return None if value is None else pytest.approx(value, rel=1e-9, abs=1e-9)


@settings(max_examples=150, deadline=None)
@given(st.lists(measurements, min_size=1, max_size=60))
def test_lanes_match_the_reference(items: list[Measurement]) -> None:
    lanes = close_one_window(items)
    by_key = {(s.protocol, s.traffic_class, s.source, s.destination, s.probe): s for s in lanes}
    expected_keys: set[tuple[str, str, str, str, str]] = set()
    for m in items:
        expected_keys.add((m.protocol, m.traffic_class, m.source, "", ""))
        if m.source == "probe" and (m.probe or m.destination):
            expected_keys.add((m.protocol, m.traffic_class, "probe", m.destination, m.probe))
        elif m.destination == "127.0.0.1":
            expected_keys.add((m.protocol, m.traffic_class, "passive", m.destination, ""))
    assert set(by_key) == expected_keys
    for key, lane in by_key.items():
        protocol, traffic_class, source, destination, probe = key
        members = [
            m
            for m in items
            if (m.protocol, m.traffic_class, m.source) == (protocol, traffic_class, source)
            and (not destination or m.destination == destination)
            and (not probe or m.probe == probe)
            and (source != "probe" or not destination or m.probe == probe)
        ]
        ref = reference_lane(members)
        assert lane.count == ref["count"]
        assert lane.errors == ref["errors"]
        assert lane.outcomes == ref["outcomes"]
        assert lane.error_pct == approx(ref["error_pct"])
        assert lane.loss_pct == approx(ref["loss_pct"])
        assert lane.latency_min_ms == ref["min"]
        assert lane.latency_max_ms == ref["max"]
        assert lane.latency_median_ms == approx(ref["median"])
        assert lane.latency_p90_ms == ref["p90"]
        assert lane.latency_mean_ms == approx(ref["mean"])
        assert lane.jitter_ms == approx(ref["jitter"])
        if ref["mean"] is None:
            assert lane.mos is None
        else:
            assert lane.mos is not None and 1.0 <= lane.mos <= 4.5


@settings(max_examples=80, deadline=None)
@given(st.lists(measurements, min_size=1, max_size=40, unique_by=lambda m: m.ts), st.randoms())
def test_lanes_come_in_one_order_whatever_the_arrival_order(
    items: list[Measurement], rng: random.Random
) -> None:
    shuffled = list(items)
    rng.shuffle(shuffled)
    lanes = close_one_window(items)
    assert close_one_window(shuffled) == lanes
    keys = [(s.protocol, s.traffic_class, s.source, s.destination, s.probe) for s in lanes]
    aggregates = [key for key in keys if key[3:] == ("", "")]
    details = [key for key in keys if key[3:] != ("", "")]
    # aggregate lanes first, then detail lanes, each sorted
    assert keys == sorted(aggregates) + sorted(details)


def test_a_layout_of_many_destinations_is_reported_and_not_kept() -> None:
    # passive sessions towards 300 destinations the config names (others would be
    # folded, limits.MAX_UNLISTED_LANES): more fine lanes than a kept plan holds
    items = [
        Measurement(
            ts=START + i * 0.01,
            protocol="tcp",
            source="passive",
            destination=f"127.0.{1 + i // 200}.{1 + i % 200}",
            latency_ms=float(i),
        )
        for i in range(300)
    ]
    items.append(
        Measurement(ts=START + 4, protocol="tcp", source="passive", destination="127.0.0.1")
    )
    kept = dict(lanes_module._plans)
    assert len(items) > lanes_module.PLAN_CACHE_MAX_LANES
    aggregate, tracked = close_one_window(items, frozenset(m.destination for m in items))
    assert lanes_module._plans == kept
    assert (aggregate.source, aggregate.destination, aggregate.count) == ("passive", "", 301)
    assert aggregate.latency_max_ms == 299.0
    assert (tracked.destination, tracked.count, tracked.latency_mean_ms) == ("127.0.0.1", 1, None)


def test_exact_quantiles_of_a_known_window() -> None:
    items = [
        Measurement(ts=START + i * 0.1, protocol="icmp", destination="127.0.0.1", latency_ms=v)
        for i, v in enumerate([10.0, 30.0, 20.0, 40.0, 1000.0, 50.0, 60.0, 70.0, 80.0, 90.0])
    ]
    items.append(Measurement(ts=START + 2, protocol="icmp", outcome="timeout"))
    aggregate = close_one_window(items)[0]
    assert (aggregate.destination, aggregate.probe) == ("", "")
    assert aggregate.count == 11 and aggregate.errors == 1
    assert aggregate.latency_median_ms == 55.0
    assert aggregate.latency_p90_ms == 90.0
    assert aggregate.latency_min_ms == 10.0 and aggregate.latency_max_ms == 1000.0
    assert aggregate.loss_pct == pytest.approx(100 / 11)
    # consecutive differences: 20, 10, 20, 960, 950, 10, 10, 10, 10
    assert aggregate.jitter_ms == pytest.approx(2000 / 9)


def test_mos_follows_the_simplified_e_model() -> None:
    assert mos(0.0, 0.0, 0.0) == pytest.approx(4.4, abs=0.05)
    assert mos(20.0, 2.0, 0.0) > mos(200.0, 2.0, 0.0) > mos(200.0, 2.0, 10.0)
    assert mos(5000.0, 100.0, 100.0) == 1.0
