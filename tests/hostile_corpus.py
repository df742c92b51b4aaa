"""A corpus of hostile payloads for every subject, request subject and KV bucket
pathwatch consumes, derived from `schemas.subjects` so that a new subject cannot
be left out (`consumed_inputs` fails on a prefix or bucket it does not know).

Each payload is bytes with a label: truncated, wrong types, huge, deeply nested,
NaN and infinities, far-future and far-past timestamps, unsafe names, unknown
versions and oversized text, besides plain garbage.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from schemas import subjects
from schemas.wire import (
    AgentHeartbeat,
    Alarm,
    ConfigRecord,
    DeadLetter,
    EnforcerLease,
    FastEvidence,
    HealCommand,
    LaneStats,
    LbSelectRequest,
    Measurement,
    MeasurementBatch,
    PathEvent,
    PathState,
    ProbeState,
    RoleStatus,
    RouteCommand,
    WindowStats,
)

#: 900 kB of text: under NATS's 1 MiB max payload, over every text bound
HUGE_TEXT = "x" * 900_000
NESTING = 100_000


@dataclass(frozen=True)
class Input:
    """One input of the product: how to reach it and a valid message of its type."""

    name: str
    kind: str  # "core", "stream", "request" or "kv"
    target: str  # subject, or KV bucket
    valid: msgspec.Struct
    key: str = ""  # KV key


def valid_messages(service: str, route: str, node: str, now: float) -> dict[str, msgspec.Struct]:
    """A valid message of every type, for a configured route."""
    return {
        "batch": MeasurementBatch(
            agent="hostile-agent",
            node=node,
            seq=1,
            sent=now,
            service=service,
            route=route,
            items=[Measurement(ts=now, protocol="tcp", destination="127.0.0.1", latency_ms=1.0)],
        ),
        "window": WindowStats(
            service=service,
            route=route,
            window_start=now - 1,
            window_end=now,
            lanes=[LaneStats(protocol="tcp", traffic_class="best-effort", count=1)],
        ),
        "fast": FastEvidence(service=service, route=route, ts=now, kind="link-up", detail="d"),
        "event": PathEvent(
            id="e", service=service, route=route, kind="fresh", ts=now, state="up", previous="up"
        ),
        "alarm": Alarm(id="hostile", status="cleared", service=service, route=route, reason="r"),
        "route-command": RouteCommand(
            id="c", action="restore", node=node, service=service, route=route, ts=now, reason="r"
        ),
        "heal-command": HealCommand(id="h", service=service, route=route, ts=now, reason="r"),
        "lb-select": LbSelectRequest(service=service),
        "heartbeat": AgentHeartbeat(
            agent="hostile-agent", node=node, version="1", config_hash="x", ts=now
        ),
        "status": RoleStatus(role="hostile", instance="x", ts=now),
        "path-state": PathState(service=service, route=route, updated=now, reason="r"),
        "probe-state": ProbeState(
            probe="hostile", state="up", service=service, route=route, set_at=now
        ),
        "lease": EnforcerLease(holder="hostile", expires=now - 1000),
        "config": ConfigRecord(
            name=service,
            text=f"services: {{{service}: {{}}}}\n",
            format="yaml",
            digest="d",
            pushed_at=now,
        ),
        "dead-letter": DeadLetter(notifier="hostile", kind="webhook", reason="rejected"),
    }


#: every subject prefix and bucket of schemas.subjects -> (input name, kind, message)
_PREFIXES: dict[str, tuple[str, str, str]] = {
    "MEAS_PREFIX": ("meas", "core", "batch"),
    "STATS_PREFIX": ("stats", "core", "window"),
    "FAST_PREFIX": ("fast", "core", "fast"),
    "EVENT_PREFIX": ("event", "stream", "event"),
    "ALARM_PREFIX": ("alarm", "stream", "alarm"),
    "CMD_ROUTE_PREFIX": ("route-command", "stream", "route-command"),
    "CMD_HEAL_PREFIX": ("heal-command", "stream", "heal-command"),
    "LB_SELECT_PREFIX": ("lb-select", "request", "lb-select"),
    "HEARTBEAT_PREFIX": ("heartbeat", "core", "heartbeat"),
    "STATUS_PREFIX": ("status", "core", "status"),
    "DEADLETTER_PREFIX": ("dead-letter", "stream", "dead-letter"),
}
_BUCKETS: dict[str, tuple[str, str]] = {
    "KV_PATHS": ("kv-path", "path-state"),
    "KV_PROBES": ("kv-probe", "probe-state"),
    "KV_LEASES": ("kv-lease", "lease"),
    "KV_CONFIG": ("kv-config", "config"),
}


def _subject(prefix_name: str, service: str, route: str, node: str, agent: str) -> str:
    builders: dict[str, Callable[[], str]] = {
        "MEAS_PREFIX": lambda: subjects.meas(service, route),
        "STATS_PREFIX": lambda: subjects.stats(service, route),
        "FAST_PREFIX": lambda: subjects.fast(service, route),
        "EVENT_PREFIX": lambda: subjects.event(service, route),
        "ALARM_PREFIX": lambda: subjects.alarm(service, route),
        "CMD_ROUTE_PREFIX": lambda: subjects.cmd_route(node),
        "CMD_HEAL_PREFIX": lambda: subjects.cmd_heal(service, route),
        "LB_SELECT_PREFIX": lambda: subjects.lb_select(service),
        "HEARTBEAT_PREFIX": lambda: subjects.heartbeat(node, agent),
        "STATUS_PREFIX": lambda: subjects.status("hostile", "x"),
        "DEADLETTER_PREFIX": lambda: subjects.deadletter("hostile"),
    }
    return builders[prefix_name]()


def consumed_inputs(service: str, route: str, node: str, now: float) -> list[Input]:
    """Every input of the product, one per subject prefix and KV bucket of
    `schemas.subjects`; raises when subjects.py has one this corpus does not know."""
    names = [n for n in vars(subjects) if n.endswith("_PREFIX")]
    buckets = [n for n in vars(subjects) if n.startswith("KV_")]
    unknown = sorted(set(names) - set(_PREFIXES)) + sorted(set(buckets) - set(_BUCKETS))
    if unknown:
        raise AssertionError(f"schemas.subjects has inputs the hostile corpus lacks: {unknown}")
    valid = valid_messages(service, route, node, now)
    inputs = [
        Input(name, kind, _subject(prefix, service, route, node, "hostile-agent"), valid[message])
        for prefix, (name, kind, message) in _PREFIXES.items()
    ]
    keys = {
        "KV_PATHS": subjects.path_key(service, route),
        "KV_PROBES": f"hostile.{service}.{route}",
        "KV_LEASES": subjects.LEASE_ENFORCER,
        "KV_CONFIG": service,  # the config named after the service
    }
    inputs += [
        Input(name, "kv", getattr(subjects, bucket), valid[message], key=keys[bucket])
        for bucket, (name, message) in _BUCKETS.items()
    ]
    return inputs


def _variant(valid: msgspec.Struct, **changes: Any) -> bytes:
    document = msgspec.to_builtins(valid)
    document.update(changes)
    return json.dumps(document).encode()


def _time_fields(valid: msgspec.Struct) -> list[str]:
    fields = ("sent", "ts", "window_end", "set_at", "expires", "raised_at", "updated")
    return [f for f in fields if f in valid.__struct_fields__]


def _text_fields(valid: msgspec.Struct) -> list[str]:
    return [
        f for f in ("detail", "reason", "holder", "config_hash") if f in valid.__struct_fields__
    ]


def payloads(valid: msgspec.Struct) -> list[tuple[str, bytes]]:
    """The hostile payloads for an input whose valid message is `valid`."""
    good = msgspec.json.encode(valid)
    corpus: list[tuple[str, bytes]] = [
        ("empty", b""),
        ("garbage", b"\xff\xfe\x00not json"),
        ("truncated", good[: len(good) // 2]),
        ("array", b"[]"),
        ("empty-object", b"{}"),
        ("wrong-types", json.dumps({key: [1] for key in msgspec.to_builtins(valid)}).encode()),
        ("deep-array", b"[" * NESTING + b"]" * NESTING),
        ("deep-field", good[:-1] + b',"deep":' + b"[" * NESTING + b"]" * NESTING + b"}"),
        ("deep-object", b'{"a":' * 5000 + b"1" + b"}" * 5000),
        ("huge-unknown-field", _variant(valid, junk=HUGE_TEXT)),
        ("unknown-version", _variant(valid, v=99)),
        ("version-string", _variant(valid, v="1")),
        ("unsafe-names", _variant(valid, service="a.b>*", route="..", agent="x y", node="*")),
    ]
    for field in _time_fields(valid):
        corpus += [
            (f"nan-{field}", good[:-1] + f',"{field}":NaN}}'.encode()),
            (f"inf-{field}", good[:-1] + f',"{field}":1e999}}'.encode()),
            (f"year-5138-{field}", _variant(valid, **{field: 1e11})),
            (f"year-2090-{field}", _variant(valid, **{field: 3.8e9})),
            (f"far-past-{field}", _variant(valid, **{field: 1.0})),
            (f"negative-{field}", _variant(valid, **{field: -5.0})),
        ]
    for field in _text_fields(valid):
        corpus.append((f"oversized-{field}", _variant(valid, **{field: HUGE_TEXT})))
    return corpus
