"""The best-effort choice stays put while nothing better is known (issue 21): a
route merely back on probation does not move it; a route judged up ends it."""

from enforcer.selection import Candidate, best_effort_choice
from schemas.wire import PathEvent, RouteCommand
from tests.test_enforcer_engine import engine, messages, tcp, window


def test_the_current_choice_sticks_until_another_route_is_up_and_in_service() -> None:
    kept = Candidate("r2", quality=10.0, cost=20, current=True)
    better = Candidate("r1", quality=90.0, cost=10, current=False)
    assert best_effort_choice([better, kept]) == "r2"
    on_probation = Candidate("r1", 90.0, 10, current=False, in_service=True)
    assert best_effort_choice([on_probation, kept]) == "r2"
    up = Candidate("r1", 90.0, 10, current=False, in_service=True, up=True)
    assert best_effort_choice([up, kept]) is None
    # none kept yet: only when no route is in service, the best by quality then cost
    assert best_effort_choice([on_probation, Candidate("r2", 10.0, 20, False)]) is None
    assert best_effort_choice([better, Candidate("r2", 10.0, 20, False)]) == "r1"
    assert best_effort_choice([Candidate("b", 50, 10, False), Candidate("a", 50, 10, False)]) == "a"
    assert best_effort_choice([]) is None


def test_a_probation_expiry_does_not_move_best_effort_between_dead_routes() -> None:
    eng, clock = engine()
    eng.on_window(window("web", "r1", 10_000, tcp(0)))
    eng.on_window(window("web", "r2", 10_000, tcp(0)))
    eng.on_window(window("web", "r1", 10_005, tcp(70)))
    eng.on_window(window("web", "r2", 10_005, tcp(95)))
    states = {p.route: p for p in eng.path_states()}
    assert states["r1"].best_effort and not states["r2"].in_service
    # r2 (organic traffic) goes on probation at its hold-down end; r1 (probes, none
    # passed) stays held: the best-effort choice stays r1, only r2 is restored
    clock.now = 10_065
    out = eng.tick()
    assert [(c.route, c.action) for c in messages(out, RouteCommand)] == [("r2", "restore")]
    states = {p.route: p for p in eng.path_states()}
    assert states["r2"].state == "probation" and states["r2"].in_service
    assert states["r1"].best_effort and states["r1"].in_service and states["r1"].state == "down"
    # the probation window fails: r2 down again, r1 still the best-effort route
    out = eng.on_window(window("web", "r2", 10_070, tcp(90)))
    assert [(c.route, c.action) for c in messages(out, RouteCommand)] == [("r2", "withdraw")]
    assert [e.kind for e in messages(out, PathEvent)] == ["path-down"]
    states = {p.route: p for p in eng.path_states()}
    assert states["r1"].best_effort and not states["r2"].in_service
    # r2 back on probation and passing: up, so r1 is no longer needed as best effort
    clock.now = 10_070 + 120
    eng.tick()
    out = eng.on_window(window("web", "r2", 10_195, tcp(0)))
    assert [(c.route, c.action) for c in messages(out, RouteCommand)] == [("r1", "withdraw")]
    states = {p.route: p for p in eng.path_states()}
    assert states["r2"].state == "up" and not states["r1"].best_effort
