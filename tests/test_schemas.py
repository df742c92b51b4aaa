"""The wire contract: round trips, checked decoding, subjects, JSON Schema export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from schemas import (
    DecodeError,
    Measurement,
    MeasurementBatch,
    PathState,
    decode_message,
    encode,
    subjects,
)
from schemas.wire import MESSAGE_TYPES


def batch(**overrides: object) -> MeasurementBatch:
    fields: dict[str, object] = dict(
        agent="a1",
        node="n1",
        seq=1,
        sent=1.0e9,
        service="web",
        route="r1",
        items=[Measurement(ts=1.0e9, protocol="tcp", latency_ms=1.5)],
    )
    fields.update(overrides)
    return MeasurementBatch(**fields)  # type: ignore[arg-type]


def test_round_trip_and_version_field() -> None:
    data = encode(batch())
    assert json.loads(data)["v"] == 1
    assert decode_message(data, MeasurementBatch) == batch()


def test_measurements_leave_default_fields_out_and_decode_them_back() -> None:
    plain = Measurement(ts=1.0e9, protocol="tcp", latency_ms=1.5)
    failed = Measurement(
        ts=1.0e9,
        protocol="http",
        traffic_class="high",
        source="passive",
        outcome="http-status",
        status_code=503,
        detail="503 Service Unavailable",
    )
    data = encode(batch(items=[plain, failed]))
    items = json.loads(data)["items"]
    assert items[0] == {"ts": 1.0e9, "protocol": "tcp", "latency_ms": 1.5}
    assert items[1]["source"] == "passive" and items[1]["status_code"] == 503
    assert "latency_ms" not in items[1] and "dns_ms" not in items[1]
    assert decode_message(data, MeasurementBatch).items == [plain, failed]
    # a producer that writes every field (an older agent) is read the same
    explicit = msgspec.json.encode(
        {**json.loads(encode(batch())), "items": [msgspec.structs.asdict(plain)]}
    )
    assert decode_message(explicit, MeasurementBatch).items == [plain]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "json"),
        (b'{"v": 1}', "schema"),
        (b'{"v": 2, "agent": "a"}', "version"),
        (b"[]", "schema"),
    ],
)
def test_decode_reasons(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_message(data, MeasurementBatch)
    assert info.value.reason == reason


def test_values_out_of_range_and_unsafe_names_are_schema_errors() -> None:
    good = json.loads(encode(batch()))
    for path, value in [
        (("items", 0, "latency_ms"), -1.0),
        (("items", 0, "ts"), -5),
        (("service",), "we.b"),
        (("route",), "a b"),
        (("items", 0, "protocol"), "carrier-pigeon"),
    ]:
        doc = json.loads(json.dumps(good))
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(DecodeError) as info:
            decode_message(json.dumps(doc).encode(), MeasurementBatch)
        assert info.value.reason == "schema", path
    # JSON has no NaN: msgspec refuses the bare token
    text = encode(batch()).replace(b"1.5", b"NaN")
    with pytest.raises(DecodeError):
        decode_message(text, MeasurementBatch)


def test_subject_builders_refuse_unsafe_tokens() -> None:
    assert subjects.meas("web", "r1") == "pw.meas.web.r1"
    assert subjects.cmd_route("edge-1") == "pw.cmd.route.edge-1"
    assert subjects.path_key("web", "r1") == "web.r1"
    assert subjects.system_alarm("agent-1") == "pw.alarm._system.agent-1"
    for bad in ("a.b", "a*", "a>", "", "x y"):
        with pytest.raises(ValueError):
            subjects.meas(bad, "r1")


def test_frozen_structs() -> None:
    state = PathState(service="web", route="r1")
    with pytest.raises(AttributeError):
        state.state = "down"  # type: ignore[misc]


def test_schema_export_cli(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    result = subprocess.run(
        [sys.executable, "-m", "pathwatch", "schema", "export", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    names = {p.name for p in out.iterdir()}
    for kind in MESSAGE_TYPES:
        assert f"{kind.__name__}.schema.json" in names
        document = json.loads((out / f"{kind.__name__}.schema.json").read_text())
        assert document["title"] == kind.__name__
    config_schema = json.loads((out / "PathwatchConfig.schema.json").read_text())
    assert "icmp-probe-profiles" in json.dumps(config_schema)
    # The exported schema describes what we encode: a batch validates structurally.
    assert msgspec.json.decode(encode(batch()))["items"][0]["protocol"] == "tcp"
