"""Bad input never escapes the ingest path: fuzzed bytes and JSON shapes are counted and dropped."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.core import Aggregator
from pathwatch.runtime.configfile import parse_config

CONFIG = parse_config(
    """
services:
  web:
    address: [127.0.0.1/32]
    service-routes:
      r1:
        next-hop: {node: n1}
        reachability-detection: {detection-window: 5}
""",
    "test.yaml",
).config
NOW = 1_000_000.0
SUBJECT = "pw.meas.web.r1"


def good_batch(**overrides: Any) -> dict[str, Any]:
    batch: dict[str, Any] = {
        "v": 1,
        "agent": "a1",
        "node": "n1",
        "seq": 1,
        "sent": NOW,
        "service": "web",
        "route": "r1",
        "items": [{"ts": NOW, "protocol": "icmp", "outcome": "ok", "latency_ms": 1.5}],
    }
    batch.update(overrides)
    return batch


def one(batch: dict[str, Any], subject: str = SUBJECT) -> Aggregator:
    aggregator = Aggregator(CONFIG)
    aggregator.handle(subject, json.dumps(batch).encode(), NOW)
    return aggregator


def drops(aggregator: Aggregator) -> dict[str, int]:
    return {reason: n for reason, n in aggregator.counters.dropped.items() if n}


def test_a_good_batch_is_accepted() -> None:
    aggregator = one(good_batch())
    assert aggregator.counters.measurements == 1 and drops(aggregator) == {}


def test_each_kind_of_bad_batch_is_counted_by_reason() -> None:
    item = good_batch()["items"][0]
    cases: list[tuple[bytes, str, str]] = [
        (b"not json", "json", SUBJECT),
        (b'{"v": 1, "agent": "a1"', "json", SUBJECT),
        (json.dumps(good_batch(v=7)).encode(), "version", SUBJECT),
        (json.dumps(good_batch(service="we b")).encode(), "name", SUBJECT),
        (json.dumps(good_batch(agent="a.b")).encode(), "name", SUBJECT),
        (
            json.dumps(good_batch(items=[{**item, "latency_ms": -3}])).encode(),
            "value",
            SUBJECT,
        ),
        (
            json.dumps(good_batch(items=[{**item, "latency_ms": 1}]))
            .replace('"latency_ms": 1', '"latency_ms": NaN')
            .encode(),
            "value",
            SUBJECT,
        ),
        (json.dumps(good_batch(items=[{**item, "outcome": "great"}])).encode(), "schema", SUBJECT),
        (json.dumps(good_batch(items="none")).encode(), "schema", SUBJECT),
        (json.dumps(good_batch(route="r2")).encode(), "subject", SUBJECT),
        (json.dumps(good_batch(route="r2")).encode(), "unknown-route", "pw.meas.web.r2"),
    ]
    for data, reason, subject in cases:
        aggregator = Aggregator(CONFIG)
        aggregator.handle(subject, data, NOW)
        assert drops(aggregator) == {reason: 1}, (data, reason)
        assert aggregator.counters.measurements == 0
        # the consumer still works after the bad message
        aggregator.handle(SUBJECT, json.dumps(good_batch(seq=99)).encode(), NOW)
        assert aggregator.counters.measurements == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

item_shapes = st.fixed_dictionaries(
    {},
    optional={
        "ts": json_values | st.floats(min_value=NOW - 10, max_value=NOW + 10),
        "protocol": json_values | st.sampled_from(["icmp", "tcp", "bogus"]),
        "outcome": json_values | st.sampled_from(["ok", "timeout"]),
        "latency_ms": json_values | st.floats(),
        "traffic_class": st.sampled_from(["high", "nope"]),
    },
)

batch_shapes = st.fixed_dictionaries(
    {},
    optional={
        "v": st.sampled_from([1, 1, 2, "1", None]),
        "agent": st.sampled_from(["a1", "", "a b", "a.b"]) | json_values,
        "node": st.just("n1") | json_values,
        "seq": st.integers(min_value=-2, max_value=5) | json_values,
        "sent": st.floats(min_value=NOW - 5, max_value=NOW + 5) | json_values,
        "service": st.sampled_from(["web", "x"]) | json_values,
        "route": st.sampled_from(["r1", "r2"]) | json_values,
        "items": st.lists(item_shapes, max_size=5) | json_values,
    },
)


def _accounted(aggregator: Aggregator, messages: int) -> None:
    counters = aggregator.counters
    message_drops = sum(
        n for reason, n in counters.dropped.items() if reason not in ("late", "future")
    )
    assert counters.messages == messages
    assert counters.batches + message_drops == messages


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=5))
def test_random_bytes_never_escape(payloads: list[bytes]) -> None:
    aggregator = Aggregator(CONFIG)
    for payload in payloads:
        aggregator.handle(SUBJECT, payload, NOW)
    _accounted(aggregator, len(payloads))


@settings(max_examples=200, deadline=None)
@given(st.lists(batch_shapes | json_values, min_size=1, max_size=5))
def test_random_json_shapes_never_escape(shapes: list[Any]) -> None:
    aggregator = Aggregator(CONFIG)
    for shape in shapes:
        aggregator.handle(SUBJECT, msgspec.json.encode(shape), NOW)
    _accounted(aggregator, len(shapes))
    for _ in aggregator.close_due(NOW + 100):
        pass
    # a good batch after all that is still taken, and its window is not poisoned
    aggregator.handle(SUBJECT, json.dumps(good_batch(seq=1000, sent=NOW + 1)).encode(), NOW + 1)
    closed = aggregator.close_due(NOW + 100)
    assert closed and all(lane.count >= 1 for lane in closed[-1].lanes)
