"""Every decoder and bound against hostile input, without NATS.

Hypothesis fuzzes `decode_message` for every wire type (and the aggregator's
batch decoder): any bytes or JSON give the message or a DecodeError with a
countable reason, never anything else. Then the bounds one by one: depth and
size, trimming under the max payload, lanes per route, per-agent tables,
heartbeats of unknown agents, event times off the clock, free text.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.core import Aggregator
from aggregator.dedupe import Deduplicator
from aggregator.ingest import REASONS, decode_batch
from aggregator.skew import SkewMonitor
from enforcer.engine import Engine
from pathwatch.runtime.configfile import parse_config
from schemas.codec import DecodeError, decode_message
from schemas.fit import fit
from schemas.limits import (
    MAX_MESSAGE_BYTES,
    MAX_NESTING_DEPTH,
    MAX_TEXT_CHARS,
    MAX_UNLISTED_LANES,
)
from schemas.wire import (
    MESSAGE_TYPES,
    AgentHeartbeat,
    FastEvidence,
    LaneStats,
    Measurement,
    MeasurementBatch,
    PathState,
    WindowStats,
)

CODEC_REASONS = {"size", "depth", "json", "schema", "version"}
NOW = 1_700_000_000.0

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _fields(kind: type[msgspec.Struct]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the type's own field names and any values: the likeliest to pass
    the first checks and break something further in."""
    return st.dictionaries(st.sampled_from(kind.__struct_fields__), json_values, max_size=8)


@pytest.mark.parametrize("kind", MESSAGE_TYPES, ids=lambda kind: kind.__name__)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_input_decodes_or_is_refused_with_a_reason(
    kind: type[msgspec.Struct], data: st.DataObject
) -> None:
    payload = data.draw(
        st.one_of(
            st.binary(max_size=200),
            json_values.map(lambda value: json.dumps(value).encode()),
            _fields(kind).map(lambda value: json.dumps(value).encode()),
        )
    )
    try:
        decode_message(payload, kind)
    except DecodeError as error:
        assert error.reason in CODEC_REASONS


@settings(max_examples=200, deadline=None)
@given(payload=st.one_of(st.binary(max_size=200), _fields(MeasurementBatch).map(json.dumps)))
def test_the_batch_decoder_gives_a_batch_or_a_reason(payload: bytes | str) -> None:
    data = payload.encode() if isinstance(payload, str) else payload
    result = decode_batch(data)
    assert isinstance(result, MeasurementBatch) or result in REASONS


@pytest.mark.parametrize("kind", MESSAGE_TYPES, ids=lambda kind: kind.__name__)
def test_nesting_past_the_recursion_limit_is_depth(kind: type[msgspec.Struct]) -> None:
    deep = b"[" * (MAX_NESTING_DEPTH + 1) + b"]" * (MAX_NESTING_DEPTH + 1)
    for payload in (deep, b'{"v": 1, "x": ' + deep + b"}", b'{"v": ' + deep + b"}"):
        with pytest.raises(DecodeError) as caught:
            decode_message(payload, kind)
        assert caught.value.reason in ("depth", "schema")
    with pytest.raises(DecodeError, match="depth"):
        decode_message(b'{"v": 1, "x": ' + deep + b"}", kind)


def test_oversized_messages_are_refused_before_decoding() -> None:
    with pytest.raises(DecodeError, match="size"):
        decode_message(b" " * (MAX_MESSAGE_BYTES + 1), WindowStats)


def _lane(destination: str) -> LaneStats:
    return LaneStats(protocol="icmp", traffic_class="high", destination=destination, count=1)


def test_fit_trims_windows_and_states_under_the_limit() -> None:
    lanes = [_lane("")] + [_lane(f"127.0.{i // 250}.{i % 250}") for i in range(8000)]
    window = WindowStats(service="s", route="r", window_start=1, window_end=2, lanes=lanes)
    data, trimmed = fit(window, 100_000)
    assert trimmed and data is not None and len(data) <= 100_000
    assert [lane["destination"] for lane in msgspec.json.decode(data)["lanes"]] == [""]
    empty = WindowStats(service="s", route="r", window_start=1, window_end=2, lanes=[])
    small, trimmed = fit(empty, 1000)
    assert small is not None and not trimmed
    state = PathState(service="s", route="r", reason="x" * 900_000)
    data, trimmed = fit(state, 100_000)
    assert trimmed and data is not None and len(data) < 10_000


CONFIG = """
icmp-probe-profiles:
  ping: {probe-interval: 1, probe-address: [127.0.0.1]}
services:
  web:
    address: [127.0.0.2/32]
    service-routes:
      r1:
        next-hop: {node: edge-1, interface: lo}
        reachability-detection:
          detection-window: 5
          probes: [{name: ping, icmp-probe-profile: ping}]
"""


def _batch(seq: int, destinations: list[str], agent: str = "a1") -> bytes:
    items = [
        Measurement(ts=NOW, protocol="icmp", probe="ping", destination=d, latency_ms=1.0)
        for d in destinations
    ]
    return msgspec.json.encode(
        MeasurementBatch(
            agent=agent, node="edge-1", seq=seq, sent=NOW, service="web", route="r1", items=items
        )
    )


def test_lanes_per_route_are_the_named_destinations_plus_a_bounded_few() -> None:
    aggregator = Aggregator(parse_config(CONFIG).config)
    named = ["127.0.0.1", "127.0.0.2"]  # the probe address and the tracked service address
    for seq in range(40):
        others = [f"127.1.{seq}.{i}" for i in range(100)]
        aggregator.handle("pw.meas.web.r1", _batch(seq, named + others), NOW)
    [window] = aggregator.close_due(NOW + 60)
    destinations = {lane.destination for lane in window.lanes if lane.destination}
    assert set(named) <= destinations
    assert len(destinations) == len(named) + MAX_UNLISTED_LANES
    assert aggregator.counters.dropped["lane-limit"] == 40 * 100 - MAX_UNLISTED_LANES
    [aggregate] = [lane for lane in window.lanes if not lane.destination and not lane.probe]
    assert aggregate.count == 40 * 102  # every measurement still counts


def test_batches_with_absurd_send_times_are_refused() -> None:
    aggregator = Aggregator(parse_config(CONFIG).config)
    for seq, sent in enumerate((NOW + 2 * 86400, NOW - 2 * 86400)):
        batch = msgspec.json.decode(_batch(seq, ["127.0.0.1"]))
        batch["sent"] = sent
        aggregator.handle("pw.meas.web.r1", json.dumps(batch).encode(), NOW)
    batch["sent"] = 1e11  # the year 5138: out of the schema's range
    aggregator.handle("pw.meas.web.r1", json.dumps(batch).encode(), NOW)
    assert aggregator.counters.dropped["clock"] == 2
    assert aggregator.counters.dropped["value"] == 1
    assert aggregator.counters.batches == 0


def test_per_agent_tables_are_bounded() -> None:
    dedupe = Deduplicator(per_agent=8, max_agents=100, max_entries=500)
    skew = SkewMonitor(max_agents=100)
    for n in range(10_000):
        for seq in range(3):
            dedupe.is_duplicate(f"agent-{n}", seq, 1.0)
        skew.observe(f"agent-{n}", NOW, NOW)
    assert dedupe.agents() <= 100 and skew.agents.__len__() <= 100
    assert not dedupe.is_duplicate("agent-0", 0, 1.0)  # evicted long ago
    assert dedupe.is_duplicate("agent-9999", 2, 1.0)  # recent: still known


class Clock:
    now = NOW

    def __call__(self) -> float:
        return self.now


def _heartbeat(agent: str, node: str, ts: float, routes: list[str] | None = None) -> AgentHeartbeat:
    return AgentHeartbeat(
        agent=agent, node=node, version="1", config_hash="x", ts=ts, routes=routes or []
    )


def test_heartbeats_only_from_known_agents_and_alarms_rate_limited() -> None:
    clock = Clock()
    engine = Engine(parse_config(CONFIG).config, clock)
    for n in range(2000):
        engine.on_heartbeat(_heartbeat(f"made-up-{n}", f"nowhere-{n}", NOW))
    engine.on_heartbeat(_heartbeat("real", "edge-1", NOW))
    engine.on_heartbeat(_heartbeat("real", "edge-1", NOW + 0.1))  # too soon
    engine.on_heartbeat(_heartbeat("claims", "elsewhere", NOW, ["web.r1"]))
    engine.on_heartbeat(_heartbeat("skewed", "edge-1", NOW + 2 * 86400))
    assert set(engine.liveness.agents) == {"real", "claims"}
    assert engine.dropped["heartbeat:unknown-agent"] == 2000
    assert engine.dropped["heartbeat:rate"] == 1 and engine.dropped["heartbeat:clock"] == 1
    clock.now = NOW + 60
    lost = [p.message for p in engine.tick().publications]
    assert len(lost) == 2  # one agent-lost alarm per known agent, none for made-up names
    engine.on_heartbeat(_heartbeat("real", "edge-1", clock.now))  # back: alarm cleared
    clock.now += 60
    again = [p.message for p in engine.tick().publications]
    assert not [a for a in again if getattr(a, "agent", "") == "real"]  # rate-limited
    assert engine.dropped["agent-lost:rate"] == 1


def test_evidence_text_is_clipped_and_absurd_times_refused() -> None:
    clock = Clock()
    engine = Engine(parse_config(CONFIG).config, clock)
    huge = FastEvidence(
        service="web", route="r1", ts=NOW, kind="link-down", node="edge-1", detail="x" * 900_000
    )
    [state] = engine.on_fast(huge).paths
    assert state.state == "down" and len(state.reason) < MAX_TEXT_CHARS + 100
    late = FastEvidence(service="web", route="r1", ts=NOW - 2 * 86400, kind="link-up")
    assert not engine.on_fast(late).paths and engine.dropped["fast:clock"] == 1
