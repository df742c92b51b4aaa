"""The session tracker, classifier, route resolver and round pre-aggregation,
pure: synthetic events and injected clocks, no netlink."""

from __future__ import annotations

import socket
import statistics

import pytest

from agents.passive.classifier import Egress, FlowClassifier, RouteChoice, RouteResolver
from agents.passive.events import (
    IPS_ASSURED,
    IPS_SEEN_REPLY,
    TCP_CLOSE,
    TCP_ESTABLISHED,
    TCP_SYN_RECV,
    TCP_SYN_SENT,
    CtEvent,
    EventKind,
)
from agents.passive.rounds import RoundBuffer, chunks, to_measurement
from agents.passive.tracker import FlowLabel, SessionTracker
from pathwatch.runtime.configfile import parse_config

LABEL = FlowLabel("web", "high", "")
TCP, UDP = socket.IPPROTO_TCP, socket.IPPROTO_UDP


def event(
    kind: EventKind,
    ct_id: int = 1,
    *,
    protocol: int = TCP,
    state: int | None = TCP_SYN_SENT,
    status: int = 0,
    port: int = 40000,
    mark: int = 0,
    destination: str = "127.0.0.9",
    kernel_ns: int = 0,
) -> CtEvent:
    return CtEvent(
        kind=kind,
        ct_id=ct_id,
        protocol=protocol,
        source="127.0.0.1",
        destination=destination,
        source_port=port,
        destination_port=443,
        status=status,
        tcp_state=state if protocol == TCP else None,
        mark=mark,
        kernel_ns=kernel_ns,
    )


def tracker(**kwargs: float) -> SessionTracker:
    return SessionTracker(lambda _event: LABEL, **kwargs)  # type: ignore[arg-type]


def test_tcp_established_gives_time_from_new_to_established() -> None:
    track = tracker()
    assert track.on_event(event("new"), 10.0, 1000.0) is None
    assert track.on_event(event("update", state=TCP_SYN_RECV, status=2), 10.002, 1000.002) is None
    done = track.on_event(
        event("update", state=TCP_ESTABLISHED, status=IPS_SEEN_REPLY | IPS_ASSURED), 10.0035, 1000.0
    )
    assert done is not None and done.outcome == "ok" and done.protocol == "tcp"
    assert done.latency_ms is not None and abs(done.latency_ms - 3.5) < 1e-6
    assert len(track) == 0
    # later events of the settled session are ignored
    assert track.on_event(event("destroy", state=TCP_CLOSE), 11.0, 1001.0) is None
    assert track.counters["learned"] == 1


def test_kernel_event_times_win_over_receive_times() -> None:
    track = tracker()

    def established(ct_id: int, kernel_ns: int = 0) -> CtEvent:
        replied = IPS_SEEN_REPLY | IPS_ASSURED
        return event("update", ct_id, state=TCP_ESTABLISHED, status=replied, kernel_ns=kernel_ns)

    # both events stamped by the kernel: read together 5 ms late, still 0.25 ms apart
    track.on_event(event("new", 1, kernel_ns=1_000_000_000), 10.005, 1000.0)
    stamped = track.on_event(established(1, 1_000_250_000), 10.005, 1000.0)
    # an update without a stamp (an older kernel): the receive times are used
    track.on_event(event("new", 2, port=2, kernel_ns=2_000_000_000), 20.0, 1000.0)
    unstamped = track.on_event(established(2), 20.003, 1000.0)
    assert stamped is not None and stamped.latency_ms == pytest.approx(0.25)
    assert unstamped is not None and unstamped.latency_ms == pytest.approx(3.0)
    assert track.counters["timed_by_kernel"] == 1 and track.counters["timed_on_receipt"] == 1


def test_tcp_reset_is_close_and_expiry_in_syn_sent_is_timeout() -> None:
    track = tracker()
    track.on_event(event("new", 1), 0.0, 0.0)
    track.on_event(event("new", 2, port=2), 0.0, 0.0)
    closed = track.on_event(event("destroy", 1, state=TCP_CLOSE), 0.001, 1.0)
    expired = track.on_event(event("destroy", 2, state=TCP_SYN_SENT), 60.0, 2.0)
    assert closed is not None and closed.outcome == "close-before-establishment"
    assert expired is not None and expired.outcome == "timeout-before-establishment"
    assert closed.latency_ms is None and expired.ts == 2.0


def test_picked_up_and_unclassified_flows_are_not_tracked() -> None:
    track = SessionTracker(lambda e: None if e.destination == "127.0.0.2" else LABEL)
    track.on_event(event("new", 1, state=TCP_ESTABLISHED), 0.0, 0.0)
    track.on_event(event("new", 2, destination="127.0.0.2"), 0.0, 0.0)
    assert len(track) == 0
    assert track.counters["picked_up"] == 1 and track.counters["unclassified"] == 1


def test_udp_reply_no_reply_icmp_and_own_timeout() -> None:
    track = tracker(udp_timeout=5.0, tcp_timeout=100.0)
    for ct_id in (1, 2, 3, 4):
        track.on_event(event("new", ct_id, protocol=UDP, port=ct_id), 0.0, 0.0)
    answered = track.on_event(event("update", 1, protocol=UDP, status=IPS_SEEN_REPLY), 0.25, 1.0)
    silent = track.on_event(event("destroy", 2, protocol=UDP), 30.0, 2.0)
    unreachable = track.on_icmp_error((UDP, "127.0.0.1", "127.0.0.9", 3, 443), 0.1, 3.0)
    assert answered is not None and answered.outcome == "ok" and answered.latency_ms == 250.0
    assert silent is not None and silent.outcome == "timeout-before-establishment"
    assert unreachable is not None and unreachable.outcome == "unreachable"
    assert track.expire(4.9, 4.9) == []
    (late,) = track.expire(5.0, 5.0)
    assert late.outcome == "timeout-before-establishment" and len(track) == 0


def test_overrun_forgets_pending_sessions_instead_of_failing_them() -> None:
    track = tracker(tcp_timeout=1.0)
    track.on_event(event("new", 1), 0.0, 0.0)
    assert track.forget_pending() == 1
    assert track.expire(10.0, 10.0) == []
    assert track.counters["errors"] == 0


def test_eviction_is_counted_not_reported() -> None:
    track = SessionTracker(lambda _e: LABEL, max_sessions=2)
    for ct_id in (1, 2, 3):
        track.on_event(event("new", ct_id, port=ct_id), float(ct_id), 0.0)
    assert set(track.pending) == {2, 3} and track.counters["evicted"] == 1


def test_classifier_service_class_and_tracked_destination() -> None:
    config = parse_config(
        "passive: {classifier: port, port-classes: {443: high}}\n"
        "services:\n"
        "  web: {address: [127.0.0.0/24, 127.0.0.9/32]}\n"
        "  other: {address: [127.0.1.0/24]}\n"
    ).config
    classify = FlowClassifier(config, {"web", "other"})
    assert classify(event("new")) == FlowLabel("web", "high", "127.0.0.9")
    assert classify(event("new", destination="127.0.0.7")) == FlowLabel("web", "high", "")
    assert classify(event("new", destination="127.0.2.1")) is None
    marked = parse_config(
        "passive: {classifier: mark}\nservices:\n  web: {address: [127.0.0.0/24]}\n"
    ).config
    by_mark = FlowClassifier(marked, {"web"})
    assert by_mark(event("new", mark=46)) == FlowLabel("web", "high", "")
    assert by_mark(event("new", mark=0x100 | 34)) == FlowLabel("web", "medium", "")
    assert by_mark(event("new", mark=7)) == FlowLabel("web", "best-effort", "")


async def test_route_resolver_by_source_then_kernel_lookup_with_cache() -> None:
    calls: list[tuple[str, str]] = []
    now = [0.0]

    async def lookup(source: str, destination: str) -> Egress | None:
        calls.append((source, destination))
        return Egress("veth2", "127.0.2.2")

    resolver = RouteResolver(
        [
            RouteChoice("web", "r1", "veth1", None, "127.0.1.1"),
            RouteChoice("web", "r2", "veth2", "127.0.2.2", None),
            RouteChoice("solo", "only", None, None, None),
        ],
        lookup,
        ttl=5.0,
        clock=lambda: now[0],
    )
    assert await resolver.route("web", "127.0.1.1", "127.0.0.9") == "r1"
    assert await resolver.route("web", "127.0.0.1", "127.0.0.9") == "r2"
    assert await resolver.route("web", "127.0.0.1", "127.0.0.9") == "r2"
    assert calls == [("127.0.0.1", "127.0.0.9")]
    now[0] = 6.0
    assert await resolver.route("web", "127.0.0.1", "127.0.0.9") == "r2"
    assert len(calls) == 2
    assert await resolver.route("solo", "127.0.0.1", "127.0.0.9") == "only"
    assert await resolver.route("nothing", "127.0.0.1", "127.0.0.9") is None


def test_rounds_keep_every_session_so_median_and_p90_stay_exact() -> None:
    track = tracker()
    buffer = RoundBuffer()
    latencies = [0.5 + index * 0.01 for index in range(5000)]
    for ct_id, latency in enumerate(latencies, start=1):
        track.on_event(event("new", ct_id, port=ct_id % 60000), 0.0, 0.0)
        done = track.on_event(
            event("update", ct_id, state=TCP_ESTABLISHED, status=IPS_SEEN_REPLY),
            latency / 1000,
            1.0,
        )
        assert done is not None
        buffer.add(done)
    items = [to_measurement(outcome) for outcome in buffer.take()]
    assert len(buffer) == 0
    parts = list(chunks(items, 2000))
    assert [len(part) for part in parts] == [2000, 2000, 1000]
    sent = [item.latency_ms for part in parts for item in part]
    assert all(item.source == "passive" for item in items)
    kept = [x for x in sent if x is not None]
    assert len(kept) == len(latencies)
    # exact up to the 1e-6 ms rounding of latency_ms on the wire
    assert statistics.median(kept) == pytest.approx(statistics.median(latencies), abs=1e-6)
    assert statistics.quantiles(kept, n=10) == pytest.approx(
        statistics.quantiles(latencies, n=10), abs=1e-6
    )
