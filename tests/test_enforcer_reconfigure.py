"""A new config for a running enforcer engine (`Engine.reconfigure`): an unchanged route
keeps everything, a changed one keeps its state and is judged by its new limits, a new
one gets a state at once, a removed one has its alarms cleared and its state deleted."""

from __future__ import annotations

from enforcer.engine import Engine
from pathwatch.runtime.configfile import parse_config
from schemas.wire import Alarm
from tests.test_enforcer_engine import FakeClock, messages, tcp, window

ROUTE = """
      {name}:
        next-hop: {{node: edge-1, interface: lo}}
        reachability-detection: {{detection-window: 5, hold-down: 60, reachability-profile: {p}}}"""
CONFIG = """
reachability-profiles:
  p:
    tcp:
      high: {{acceptable-error-threshold: {threshold}, time-to-establishment: {{enabled: false}}}}
  q:
    tcp:
      high: {{acceptable-error-threshold: 50}}
services:
  web:
    address: [127.0.0.1/32]
    service-policy: {{best-effort: false}}
    service-routes:{routes}
  other:
    address: [127.0.0.2/32]
    service-routes:{other}
"""


def config(threshold: int, web: tuple[str, ...], other: tuple[str, ...] = ("keep",)) -> str:
    return CONFIG.format(
        threshold=threshold,
        routes="".join(ROUTE.format(name=name, p="p") for name in web),
        other="".join(ROUTE.format(name=name, p="q") for name in other),
    )


def test_routes_keep_change_appear_and_go() -> None:
    clock = FakeClock()
    engine = Engine(parse_config(config(50, ("r1", "gone"))).config, clock)
    engine.on_window(window("web", "r1", 10_000, tcp(0)))
    out = engine.on_window(window("web", "gone", 10_000, tcp(80)))
    [raised] = messages(out, Alarm)
    engine.on_window(window("other", "keep", 10_000, tcp(0)))
    kept = engine.trackers["other.keep"]

    clock.now = 10_002
    out = engine.reconfigure(parse_config(config(25, ("r1", "new"))).config)
    assert engine.trackers["other.keep"] is kept  # the other service did not change
    assert set(engine.trackers) == {"web.r1", "web.new", "other.keep"}
    [cleared] = messages(out, Alarm)
    assert (cleared.id, cleared.status) == (raised.id, "cleared")
    assert cleared.reason == "route removed from the config"
    assert out.deleted_paths == ["web.gone"] and "web.gone" not in engine.previous
    states = {state.route: state for state in out.paths}
    assert states["new"].state == "unknown"
    assert states["r1"].state == "up"  # resumed from its last state, not back to unknown

    # 40 % errors passed the old 50 % threshold; the new one (25 %) fails it
    out = engine.on_window(window("web", "r1", 10_005, tcp(40)))
    [state] = [p for p in out.paths if p.route == "r1"]
    assert state.state == "down" and state.reason == "tcp/high error 40 % > 25 %"


def test_a_changed_route_keeps_its_hold_down() -> None:
    clock = FakeClock()
    engine = Engine(parse_config(config(50, ("r1",))).config, clock)
    out = engine.on_window(window("web", "r1", 10_000, tcp(80)))
    [down] = out.paths
    assert down.state == "down" and down.hold_down_until is not None
    clock.now = 10_001
    out = engine.reconfigure(parse_config(config(90, ("r1",))).config)
    assert not messages(out, Alarm)  # still down: its alarm stays raised
    [state] = [p for p in engine.path_states() if p.route == "r1"]
    assert state.state == "down" and state.hold_down_until == down.hold_down_until
