"""The enforcer's shortcuts for quiet windows change nothing but speed.

A window that changes no machine is taken without judging it (the per-lane
pre-check of `QuietShortcut.accepts`, the same check compiled into a
msgspec decoder for windows that arrive as JSON, and the engine's
figures-only path). Random sequences
of windows — passing, failing, with too few samples, with lanes appearing and
disappearing, with the clock jumping past hold-downs — go through an engine
with the shortcuts and one that judges every window in full; both must
publish the same events, alarms and commands and show the same path states.
"""

from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enforcer.engine import Engine, Outputs
from pathwatch.runtime.configfile import parse_config
from schemas.codec import DecodeError, encode
from schemas.wire import LaneStats, PathState, WindowStats
from tests.test_enforcer_engine import FakeClock as Clock

CONFIG = """
reachability-profiles:
  strict:
    tcp:
      high:
        acceptable-error-threshold: 50
        time-to-establishment: {enabled: true, max: 500, mean: 250}
      low: {acceptable-error-threshold: 20, time-to-establishment: {enabled: false}}
    udp:
      high: {acceptable-error-threshold: 30}
icmp-probe-profiles:
  ping:
    probe-interval: 1
    probe-address: [127.0.0.1, 127.0.0.2]
    sla-metrics: {max-loss: 10, max-jitter: 2, latency: {max: 250, mean: 100}}
services:
  web:
    address: [127.0.0.1/32]
    service-routes:
      r1:
        next-hop: {node: edge-1, interface: lo}
        cost: 10
        reachability-detection:
          detection-window: 5
          hold-down: 10
          reachability-profile: strict
          probes: [{name: ping, icmp-probe-profile: ping}]
      r2:
        next-hop: {node: edge-2, interface: lo}
        cost: 20
        reachability-detection: {detection-window: 5, hold-down: 10, reachability-profile: strict}
"""

AGGREGATE_LANES = (("tcp", "high"), ("tcp", "low"), ("udp", "high"), ("http", "high"))
PROBE_ADDRESSES = ("127.0.0.1", "127.0.0.2")

counts = st.sampled_from([0, 2, 3, 10, 40])
percents = st.sampled_from([0.0, 5.0, 15.0, 25.0, 40.0, 60.0, 100.0])
latencies = st.one_of(st.none(), st.sampled_from([1.0, 90.0, 120.0, 240.0, 300.0, 600.0]))
healthy = {
    "counts": st.sampled_from([10, 40]),
    "percents": st.sampled_from([0.0, 5.0]),
    "latencies": st.sampled_from([1.0, 20.0]),
    "jitters": st.sampled_from([0.5, 1.0]),
}
anything = {
    "counts": counts,
    "percents": percents,
    "latencies": latencies,
    "jitters": st.one_of(st.none(), st.sampled_from([0.5, 3.0])),
}


@st.composite
def aggregate_lane(
    draw: st.DrawFn, protocol: str, traffic_class: str, figures: dict[str, Any] = anything
) -> LaneStats:
    count = draw(figures["counts"])
    error_pct = draw(figures["percents"]) if count else 0.0
    errors = round(count * error_pct / 100)
    return LaneStats(
        protocol=protocol,  # type: ignore[arg-type]
        traffic_class=traffic_class,  # type: ignore[arg-type]
        count=count,
        errors=errors,
        error_pct=error_pct,
        outcomes={"ok": count - errors, "timeout": errors},
        latency_max_ms=draw(figures["latencies"]),
        latency_mean_ms=draw(figures["latencies"]),
    )


@st.composite
def probe_lane(draw: st.DrawFn, address: str, figures: dict[str, Any] = anything) -> LaneStats:
    count = draw(st.sampled_from([4]) if figures is healthy else st.sampled_from([0, 2, 4]))
    loss = draw(figures["percents"]) if count else 0.0
    lost = round(count * loss / 100)
    return LaneStats(
        protocol="icmp",
        traffic_class="best-effort",
        probe="ping",
        destination=address,
        count=count,
        errors=lost,
        loss_pct=loss,
        outcomes={"ok": count - lost, "timeout": lost},
        latency_max_ms=draw(figures["latencies"]),
        latency_mean_ms=draw(figures["latencies"]),
        jitter_ms=draw(figures["jitters"]),
    )


@st.composite
def window_lanes(draw: st.DrawFn, steady: list[LaneStats]) -> list[LaneStats]:
    """The steady lanes with healthy new figures (quiet), sometimes changed in any way,
    dropped or extended."""
    lanes = [
        draw(probe_lane(lane.destination, healthy))
        if lane.probe
        else draw(aggregate_lane(lane.protocol, lane.traffic_class, healthy))
        for lane in steady
    ]
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        index = draw(st.integers(0, len(lanes) - 1))
        old = lanes[index]
        lanes[index] = (
            draw(probe_lane(old.destination))
            if old.probe
            else draw(aggregate_lane(old.protocol, old.traffic_class))
        )
    if draw(st.integers(0, 9)) == 0:
        del lanes[draw(st.integers(0, len(lanes) - 1))]
    if draw(st.integers(0, 9)) == 0:  # the same place now holds a tracked destination
        index = draw(st.integers(0, len(AGGREGATE_LANES) - 1))
        lanes[index] = msgspec.structs.replace(lanes[index], destination="127.0.0.1")
    if draw(st.integers(0, 9)) == 0:
        lanes.append(
            msgspec.structs.replace(lanes[0], destination="127.0.0.9", probe="", source="probe")
        )
    return lanes


@st.composite
def scenarios(draw: st.DrawFn) -> list[tuple[str, float, list[LaneStats]]]:
    steady = [draw(aggregate_lane(p, c, healthy)) for p, c in AGGREGATE_LANES]
    steady += [draw(probe_lane(address, healthy)) for address in PROBE_ADDRESSES]
    steps: list[tuple[str, float, list[LaneStats]]] = []
    for _ in range(draw(st.integers(4, 20))):
        route = draw(st.sampled_from(["r1", "r1", "r2"]))
        gap = draw(st.sampled_from([5.0, 5.0, 5.0, 15.0]))
        steps.append((route, gap, draw(window_lanes(steady))))
    return steps


def judging_everything(engine: Engine) -> Engine:
    """The same engine with every quiet-window shortcut turned off."""
    for tracker in engine.trackers.values():
        tracker.quiet.accepts = lambda lanes, end: False  # type: ignore[method-assign]
    return engine


def published(out: Outputs) -> list[tuple[str, str]]:
    return [(p.subject, p.msg_id) for p in out.publications]


def shown(state: PathState) -> dict[str, Any]:
    """A PathState without its update time (the shortcut path rebuilds it later)."""
    return msgspec.to_builtins(msgspec.structs.replace(state, updated=0.0))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_quiet_shortcuts_decide_exactly_like_full_judgement(
    steps: list[tuple[str, float, list[LaneStats]]],
) -> None:
    config = parse_config(CONFIG).config
    clock = Clock()
    fast = Engine(config, clock)
    full = judging_everything(Engine(config, clock))
    end = clock.now
    for route, gap, lanes in steps:
        end += gap
        clock.now = end + 0.5
        window = WindowStats(
            service="web", route=route, window_start=end - 5, window_end=end, lanes=lanes
        )
        # the shortcut engine gets the JSON, as the service does (quiet decoders)
        fast_out = fast.on_window_payload("web", route, encode(window))
        assert published(fast_out) == published(full.on_window(window))
        assert published(fast.tick()) == published(full.tick())
        fast_states = {f"{s.route}": shown(s) for s in fast.path_states()}
        full_states = {f"{s.route}": shown(s) for s in full.path_states()}
        assert fast_states == full_states


def test_a_quiet_window_is_taken_without_judging_and_a_failing_one_is_not() -> None:
    """The shortcut is really taken for a repeated passing window (else the
    equivalence test above would prove nothing), and not for a failing one."""
    clock = Clock()
    engine = Engine(parse_config(CONFIG).config, clock)
    tracker = engine.trackers["web.r2"]

    def tcp_high(error_pct: float) -> list[LaneStats]:
        return [
            LaneStats(
                protocol="tcp",
                traffic_class="high",
                count=10,
                errors=round(error_pct / 10),
                error_pct=error_pct,
                latency_max_ms=20,
                latency_mean_ms=10,
            )
        ]

    for index, error_pct in enumerate([0.0, 10.0, 20.0]):
        clock.now = 10_005.0 + 5 * index
        window = WindowStats(
            service="web",
            route="r2",
            window_start=clock.now - 5,
            window_end=clock.now,
            lanes=tcp_high(error_pct),
        )
        engine.on_window(window)
        assert tracker.quiet_taken == (index > 0)
    clock.now += 5
    out = engine.on_window(
        WindowStats(
            service="web",
            route="r2",
            window_start=clock.now - 5,
            window_end=clock.now,
            lanes=tcp_high(80.0),
        )
    )
    assert not tracker.quiet_taken
    assert [p.message.kind for p in out.publications if hasattr(p.message, "kind")] == ["path-down"]


def steady_lanes(**probe_changes: Any) -> list[LaneStats]:
    lanes = [
        LaneStats(
            protocol=protocol,  # type: ignore[arg-type]
            traffic_class=traffic_class,  # type: ignore[arg-type]
            count=10,
            outcomes={"ok": 10},
            latency_max_ms=1.0,
            latency_mean_ms=1.0,
        )
        for protocol, traffic_class in AGGREGATE_LANES
    ]
    lanes += [
        LaneStats(
            protocol="icmp",
            traffic_class="best-effort",
            probe="ping",
            destination=address,
            count=4,
            outcomes={"ok": 4},
            latency_max_ms=1.0,
            latency_mean_ms=1.0,
            jitter_ms=0.5,
        )
        for address in PROBE_ADDRESSES
    ]
    return lanes


#: One figure past its limit in one lane of an otherwise steady window: (lane, changes).
BREAKS = {
    "tcp/high error": (0, {"error_pct": 60.0, "errors": 6}),
    "tcp/high TTE max": (0, {"latency_max_ms": 600.0}),
    "tcp/high TTE mean": (0, {"latency_mean_ms": 300.0}),
    "tcp/low error": (1, {"error_pct": 30.0, "errors": 3}),
    "udp/high error": (2, {"error_pct": 40.0, "errors": 4}),
    "ping loss": (4, {"loss_pct": 50.0, "errors": 2}),
    "ping latency max": (5, {"latency_max_ms": 300.0}),
    "ping latency mean": (5, {"latency_mean_ms": 150.0}),
    "ping jitter": (4, {"jitter_ms": 3.0}),
    "ping too few samples": (4, {"count": 2}),
}


@pytest.mark.parametrize("lane_index, changes", BREAKS.values(), ids=list(BREAKS))
def test_one_figure_past_its_limit_is_judged_after_quiet_windows(
    lane_index: int, changes: dict[str, Any]
) -> None:
    """After quiet windows, one lane past one limit must not be taken as quiet:
    both engines publish the same, and a limit that takes the route down does."""
    config = parse_config(CONFIG).config
    clock = Clock()
    fast = Engine(config, clock)
    full = judging_everything(Engine(config, clock))
    end = clock.now
    for _ in range(3):
        end += 5
        clock.now = end + 0.5
        steady = WindowStats(
            service="web", route="r1", window_start=end - 5, window_end=end, lanes=steady_lanes()
        )
        fast_out = fast.on_window_payload("web", "r1", encode(steady))
        assert published(fast_out) == published(full.on_window(steady))
    assert fast.trackers["web.r1"].quiet_taken
    assert fast.trackers["web.r1"].quiet_decoder() is not None
    lanes = steady_lanes()
    lanes[lane_index] = msgspec.structs.replace(lanes[lane_index], **changes)
    end += 5
    clock.now = end + 0.5
    broken = WindowStats(
        service="web", route="r1", window_start=end - 5, window_end=end, lanes=lanes
    )
    out = published(fast.on_window_payload("web", "r1", encode(broken)))
    assert not fast.trackers["web.r1"].quiet_taken
    assert out == published(full.on_window(broken))
    if "too few" not in str(changes) and "count" not in changes:
        assert any(subject.startswith("pw.event.web.r1") for subject, _ in out), out


def test_figures_refresh_within_a_budget_resumes_with_the_oldest_routes() -> None:
    """`flush_metrics` with a budget stops early and the next call goes on where it
    stopped; without one every pending route is rebuilt."""
    from pathwatch.bench.enforce import bench_config_text, window

    clock = Clock()
    engine = Engine(parse_config(bench_config_text(300)).config, clock)
    names = [(f"s{i // 100}", f"r{i}") for i in range(300)]
    for close in range(3):
        end = 20_000.0 + 5 * close
        clock.now = end + 1
        for index, (service, route) in enumerate(names):
            engine.on_window(window(service, route, end, failing=False, variation=close + index))
        if close < 2:
            engine.flush_metrics(clock.now)
    pending = list(engine.pending_metrics)
    assert len(pending) == 300  # the last close was quiet everywhere: figures only
    first = engine.flush_metrics(clock.now, budget_seconds=0.0)
    done = [f"{s.service}.{s.route}" for s in first.paths]
    assert 0 < len(done) < 300
    assert done == pending[: len(done)]
    assert list(engine.pending_metrics) == pending[len(done) :]
    rest = engine.flush_metrics(clock.now)
    assert [f"{s.service}.{s.route}" for s in rest.paths] == pending[len(done) :]
    assert not engine.pending_metrics


def test_the_quiet_decoder_still_refuses_what_the_wire_contract_refuses() -> None:
    """A window the quiet decoder would take but for a value the contract forbids
    (a negative error percentage, an unknown version) is refused like any
    malformed window; one it cannot check (a count left out) is taken the
    ordinary way."""
    clock = Clock()
    engine = Engine(parse_config(CONFIG).config, clock)
    end = clock.now
    for _ in range(3):
        end += 5
        clock.now = end + 0.5
        steady = WindowStats(
            service="web", route="r1", window_start=end - 5, window_end=end, lanes=steady_lanes()
        )
        engine.on_window_payload("web", "r1", encode(steady))
    tracker = engine.trackers["web.r1"]
    assert tracker.quiet_decoder() is not None
    end += 5
    clock.now = end + 0.5
    good = WindowStats(
        service="web", route="r1", window_start=end - 5, window_end=end, lanes=steady_lanes()
    )
    payload = encode(good)
    negative = payload.replace(b'"error_pct":0.0', b'"error_pct":-1.0', 1)
    assert negative != payload
    with pytest.raises(DecodeError):
        engine.on_window_payload("web", "r1", negative)
    without_count = payload.replace(b'"count":10,', b"", 1)
    assert without_count != payload
    # the quiet decoder needs the count; the plain decode reads 0 (too few samples,
    # not judged): the window changes nothing, and the lane shows 0 samples
    assert not published(engine.on_window_payload("web", "r1", without_count))
    (state,) = [s for s in engine.path_states() if s.route == "r1"]
    assert state.state == "up"
    tcp_high = [
        lane for lane in state.lanes if lane.protocol == "tcp" and lane.traffic_class == "high"
    ]
    assert tcp_high[0].metrics is not None and tcp_high[0].metrics.count == 0
    versions = payload.replace(b'"v":1', b'"v":99', 1)
    assert versions != payload
    with pytest.raises(DecodeError) as refused:
        engine.on_window_payload("web", "r1", versions)
    assert refused.value.reason == "version"
