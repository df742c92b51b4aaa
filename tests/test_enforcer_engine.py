"""The enforcer engine without NATS: alarms, events, commands, best-effort,
detection mode, ICMP counters, plugin probe state, staleness and agent loss."""

from typing import Any

import msgspec

from enforcer.engine import Engine, Outputs
from pathwatch.runtime.configfile import parse_config
from schemas.codec import decode_message, encode
from schemas.wire import (
    AgentHeartbeat,
    Alarm,
    FastEvidence,
    HealCommand,
    LaneStats,
    LbSelectRequest,
    PathEvent,
    PathState,
    ProbeState,
    RouteCommand,
    WindowStats,
)

CONFIG = """
reachability-profiles:
  strict:
    tcp:
      high:
        acceptable-error-threshold: 50
        time-to-establishment: {enabled: true, max: 500, mean: 250}
icmp-probe-profiles:
  ping:
    probe-interval: 1
    probe-address: [127.0.0.1, 127.0.0.2]
    sla-metrics: {max-loss: 10, latency: {max: 250, mean: 100}}
services:
  web:
    address: [127.0.0.1/32]
    service-routes:
      r1:
        next-hop: {node: edge-1, interface: lo}
        cost: 10
        reachability-detection:
          detection-window: 5
          hold-down: 60
          reachability-profile: strict
          probes: [{name: ping, icmp-probe-profile: ping}]
      r2:
        next-hop: {node: edge-2, interface: lo}
        cost: 20
        reachability-detection: {detection-window: 5, hold-down: 60, reachability-profile: strict}
  watch:
    address: [127.0.0.2/32]
    service-policy: {best-effort: false}
    service-routes:
      only:
        next-hop: {node: edge-1, interface: lo}
        reachability-detection:
          enforcement: false
          detection-window: 5
          reachability-profile: strict
"""


class FakeClock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


def engine() -> tuple[Engine, FakeClock]:
    clock = FakeClock()
    return Engine(parse_config(CONFIG).config, clock), clock


def tcp(error_pct: float, count: int = 10) -> LaneStats:
    return LaneStats(
        protocol="tcp",
        traffic_class="high",
        count=count,
        errors=round(count * error_pct / 100),
        error_pct=error_pct,
        outcomes={"ok": count - round(count * error_pct / 100)},
        latency_max_ms=20,
        latency_mean_ms=10,
    )


def window(service: str, route: str, end: float, *lanes: LaneStats) -> WindowStats:
    return WindowStats(
        service=service, route=route, window_start=end - 5, window_end=end, lanes=list(lanes)
    )


def messages(out: Outputs, kind: type) -> list[Any]:
    return [p.message for p in out.publications if isinstance(p.message, kind)]


def test_failure_raises_alarm_withdraws_and_heals_then_recovers() -> None:
    eng, clock = engine()
    out = eng.on_window(window("web", "r1", 10_000, tcp(0)))
    assert out.paths[0].state == "up"
    assert out.paths[0].meets_sla
    out = eng.on_window(window("web", "r1", 10_005, tcp(62)))
    [state] = [p for p in out.paths if p.route == "r1"]
    assert state.state == "down" and not state.in_service
    assert state.reason == "tcp/high error 62 % > 50 %"
    assert state.hold_down_until == 10_065
    [alarm] = messages(out, Alarm)
    assert alarm.status == "raised" and alarm.protocol == "tcp" and alarm.traffic_class == "high"
    [command] = messages(out, RouteCommand)
    assert command.action == "withdraw" and command.node == "edge-1"
    assert command.prefixes == ["127.0.0.1/32"] and command.interface == "lo"
    assert len(messages(out, HealCommand)) == 1
    assert [e.kind for e in messages(out, PathEvent)] == ["path-down"]
    # a second failing window neither re-raises nor re-withdraws: it updates the alarm
    out = eng.on_window(window("web", "r1", 10_010, tcp(90)))
    [update] = messages(out, Alarm)
    assert (update.id, update.status, update.updated_at) == (alarm.id, "raised", 10_010)
    assert update.reason == "tcp/high error 90 % > 50 %"
    assert messages(out, RouteCommand) == [] and messages(out, PathEvent) == []
    # the same figures again change nothing
    out = eng.on_window(window("web", "r1", 10_015, tcp(90)))
    assert messages(out, Alarm) == []
    clock.now = 10_065
    out = eng.tick()
    # no window for 55 s: the route is marked stale (silence is not failure), and with
    # no probe passing since the fault it stays down, the hold-down extended (x2)
    assert [e.kind for e in messages(out, PathEvent)] == ["stale"]
    assert messages(out, RouteCommand) == []
    [held] = [p for p in out.paths if p.route == "r1"]
    assert held.state == "down" and not held.in_service and held.hold_down_until == 10_185
    assert held.recovery == "probe-verified"
    assert held.recovery_held == (
        "probes not passed since the fault: tcp/high 1 of 3 replies ok in a row"
    )
    assert held.reason.endswith("; held: " + held.recovery_held)
    # the probes pass again: the next hold-down end puts the route on probation
    clock.now = 10_070
    eng.on_window(window("web", "r1", 10_070, tcp(0)))
    clock.now = 10_185
    out = eng.tick()
    assert [e.kind for e in messages(out, PathEvent)] == ["probation"]
    assert [c.action for c in messages(out, RouteCommand)] == ["restore"]
    out = eng.on_window(window("web", "r1", 10_190, tcp(0)))
    [cleared] = messages(out, Alarm)
    assert cleared.status == "cleared" and cleared.id == alarm.id


def test_best_effort_keeps_the_best_route_when_all_are_down() -> None:
    eng, _ = engine()
    eng.on_window(window("web", "r1", 10_000, tcp(0)))
    eng.on_window(window("web", "r2", 10_000, tcp(0)))
    eng.on_window(window("web", "r1", 10_005, tcp(70)))
    out = eng.on_window(window("web", "r2", 10_005, tcp(95)))
    states = {p.route: p for p in eng.path_states()}
    assert states["r1"].best_effort and states["r1"].in_service
    assert not states["r2"].in_service
    assert "best-effort" in [e.kind for e in messages(out, PathEvent)]
    reply = eng.select(LbSelectRequest(service="web"))
    assert reply.route == "r1" and reply.best_effort


def test_detection_mode_never_withdraws() -> None:
    eng, _ = engine()
    out = eng.on_window(window("watch", "only", 10_000, tcp(80)))
    [state] = out.paths
    assert state.state == "down" and state.in_service and not state.meets_sla
    assert not state.enforcement
    assert messages(out, RouteCommand) == []
    [alarm] = messages(out, Alarm)
    assert alarm.severity == "minor"


def test_icmp_probe_sla_per_address_and_counters() -> None:
    eng, _ = engine()
    good = LaneStats(
        protocol="icmp",
        traffic_class="best-effort",
        probe="ping",
        destination="127.0.0.1",
        count=4,
        outcomes={"ok": 4},
        latency_max_ms=1,
        latency_mean_ms=1,
    )
    lossy = LaneStats(
        protocol="icmp",
        traffic_class="best-effort",
        probe="ping",
        destination="127.0.0.2",
        count=4,
        errors=2,
        error_pct=50,
        loss_pct=50,
        outcomes={"ok": 2, "timeout": 1, "send-failed": 1},
        latency_max_ms=1,
        latency_mean_ms=1,
    )
    out = eng.on_window(window("web", "r1", 10_000, good, lossy))
    state = out.paths[0]
    assert state.state == "down"
    assert state.reason == "icmp/best-effort ping 127.0.0.2 loss 50 % > 10 %"
    [probe] = [p for p in state.probes if p.name == "ping"]
    assert probe.state == "down"
    assert probe.counters == {
        "success": 6,
        "response-timeout": 1,
        "failed-to-send": 1,
        "exceeded-by-max-loss": 1,
        "exceeded-by-max-latency": 0,
        "exceeded-by-mean-latency": 0,
        "exceeded-by-max-jitter": 0,
    }


def test_fast_path_link_down() -> None:
    eng, _ = engine()
    eng.on_window(window("web", "r2", 10_000, tcp(0)))
    out = eng.on_fast(
        FastEvidence(
            service="web", route="r2", ts=10_001, kind="link-down", node="edge-2", interface="lo"
        )
    )
    [state] = [p for p in out.paths if p.route == "r2"]
    assert state.state == "down" and state.reason == "link down on edge-2/lo"


def test_plugin_probe_state_by_interface_and_ttl() -> None:
    eng, clock = engine()
    state = ProbeState(
        probe="bgp", state="down", node="edge-1", interface="lo", set_at=10_000, expires_at=10_030
    )
    out = eng.on_probe_state("bgp.if.edge-1.lo", state)
    routes = {(p.service, p.route): p.state for p in out.paths}
    assert routes[("web", "r1")] == "down" and routes[("watch", "only")] == "down"
    clock.now = 10_031
    out = eng.tick()
    assert out.expired_probe_keys == ["bgp.if.edge-1.lo"]
    cleared = [a for a in messages(out, Alarm) if a.status == "cleared"]
    assert len(cleared) == 2


def test_agent_silence_makes_routes_stale_and_raises_agent_lost() -> None:
    eng, clock = engine()
    eng.on_window(window("web", "r1", 10_000, tcp(0)))
    eng.on_heartbeat(
        AgentHeartbeat(agent="a1", node="edge-1", version="1", config_hash="x", ts=10_000)
    )
    clock.now = 10_016
    out = eng.tick()
    [lost] = messages(out, Alarm)
    assert lost.cause == "agent-lost" and lost.status == "raised"
    stale = {p.route: p for p in out.paths}
    assert stale["r1"].stale and stale["r1"].state == "up"
    out = eng.on_heartbeat(
        AgentHeartbeat(agent="a1", node="edge-1", version="1", config_hash="x", ts=10_017)
    )
    [back] = messages(out, Alarm)
    assert back.status == "cleared" and back.id == lost.id


def ping(destination: str, ok: int) -> LaneStats:
    return LaneStats(
        protocol="icmp",
        traffic_class="best-effort",
        probe="ping",
        destination=destination,
        count=4,
        errors=4 - ok,
        error_pct=25.0 * (4 - ok),
        loss_pct=25.0 * (4 - ok),
        outcomes={"ok": ok, "timeout": 4 - ok},
        latency_max_ms=1,
        latency_mean_ms=1,
    )


def test_probe_probation_is_shown_and_survives_a_restart() -> None:
    eng, clock = engine()
    eng.on_window(window("web", "r1", 10_000, ping("127.0.0.1", 4), ping("127.0.0.2", 4)))
    eng.on_window(window("web", "r1", 10_005, ping("127.0.0.1", 4), ping("127.0.0.2", 0)))
    # during the hold-down the probes pass again (probe-verified recovery)
    eng.on_window(window("web", "r1", 10_060, ping("127.0.0.1", 4), ping("127.0.0.2", 4)))
    clock.now = 10_066
    out = eng.tick()
    [state] = [p for p in out.paths if p.route == "r1"]
    [probe] = [p for p in state.probes if p.name == "ping"]
    assert state.state == "probation" and probe.state == "probation"
    assert probe.hold_down_multiplier == 1

    # a restart (or a standby taking over) resumes from the PathState in KV, as JSON
    restored, restored_clock = engine()
    restored_clock.now = clock.now
    assert restored.restore(decode_message(encode(state), PathState))
    tracker = restored.trackers["web.r1"]
    assert tracker.probes["ping"].machine.state == "probation"
    assert tracker.state == "probation"

    # probation fails again: down with the hold-down doubled, as without the restart
    out = restored.on_window(
        window("web", "r1", 10_070, ping("127.0.0.1", 4), ping("127.0.0.2", 0))
    )
    [again] = [p for p in out.paths if p.route == "r1"]
    [probe] = [p for p in again.probes if p.name == "ping"]
    assert probe.state == "down" and probe.hold_down_multiplier == 2
    assert again.hold_down_until == 10_070 + 120


PASSIVE_ONLY = """
reachability-profiles:
  strict:
    tcp:
      high: {acceptable-error-threshold: 50}
icmp-probe-profiles:
  ping: {probe-interval: 1, probe-address: [127.0.0.1]}
services:
  web:
    address: [127.0.0.1/32]
    service-policy: {best-effort: false}
    service-routes:
      real:
        next-hop: {node: edge-1, interface: lo}
        reachability-detection:
          detection-window: 5
          hold-down: 60
          reachability-profile: strict
          probe-type: disabled
          probes: [{name: ping, icmp-probe-profile: ping}]
"""


def passive(error_pct: float, destination: str = "") -> LaneStats:
    return msgspec.structs.replace(tcp(error_pct), source="passive", destination=destination)


def test_probe_type_disabled_is_judged_on_passive_lanes_only() -> None:
    clock = FakeClock()
    eng = Engine(parse_config(PASSIVE_ONLY).config, clock)
    lossy_ping = ping("127.0.0.1", 0)
    # probe figures failing do not count: the route is judged on real traffic
    out = eng.on_window(
        window("web", "real", 10_000, tcp(90), lossy_ping, passive(0), passive(0, "127.0.0.1"))
    )
    [state] = out.paths
    assert state.state == "up" and state.in_service, state.reason
    enforced = {
        (lane.source, lane.probe, lane.destination) for lane in state.lanes if lane.enforced
    }
    assert enforced == {("passive", "", "")}
    assert not messages(out, RouteCommand)
    # probe fast-path evidence is ignored too
    icmp = FastEvidence(
        service="web",
        route="real",
        ts=10_001,
        kind="consecutive-failures",
        protocol="icmp",
        count=3,
    )
    assert eng.on_fast(icmp).paths == []
    # passive failures alone take the route out of service
    out = eng.on_window(window("web", "real", 10_005, tcp(0), passive(80)))
    [state] = out.paths
    assert state.state == "down" and not state.in_service
    assert state.reason == "tcp/high error 80 % > 50 %"
    [command] = messages(out, RouteCommand)
    assert command.action == "withdraw"
