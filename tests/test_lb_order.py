"""The load balancer's ordering rule (enforcer.selection.preference): one rule for
`pw.lb.select` and `show load-balancer`, stable against latency noise."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from enforcer.load_balancer import load_balancer_rows
from enforcer.selection import quality_band, rank, select
from schemas.wire import LbSelectRequest, PathState

REQUEST = LbSelectRequest(service="web")


def route(name: str, cost: int, quality: float, **fields: object) -> PathState:
    defaults: dict[str, object] = {"state": "up", "meets_sla": True, "in_service": True}
    defaults.update(fields)
    return PathState(service="web", route=name, cost=cost, quality=quality, **defaults)  # type: ignore[arg-type]


# Sub-millisecond latency noise on a healthy loopback route moves quality by well under
# a point (quality = 100 / (1 + mean latency / 250 ms)); 80-100 covers far more than that.
noisy_quality = st.floats(min_value=80.0, max_value=100.0)


@given(cheap=noisy_quality, dear=noisy_quality)
def test_two_healthy_routes_rank_by_cost_whatever_the_noise(cheap: float, dear: float) -> None:
    states = [route("r-dear", 20, dear), route("r-cheap", 10, cheap)]
    assert [s.route for s in rank(states, REQUEST)] == ["r-cheap", "r-dear"]
    assert select(states, REQUEST).route == "r-cheap"
    assert [row.route for row in load_balancer_rows(states, "web")] == ["r-cheap", "r-dear"]


def test_meeting_the_sla_and_state_come_before_cost() -> None:
    failing = route("r-cheap", 10, 99.0, meets_sla=False)
    probation = route("r-mid", 15, 99.0, state="probation")
    healthy = route("r-dear", 20, 95.0)
    ranked = rank([failing, probation, healthy], REQUEST)
    assert [s.route for s in ranked] == ["r-dear", "r-mid", "r-cheap"]


def test_equal_cost_routes_rank_by_quality_band_then_name() -> None:
    states = [route("b", 10, 99.9), route("a", 10, 90.2), route("c", 10, 72.0)]
    assert [s.route for s in rank(states, REQUEST)] == ["a", "b", "c"]
    assert quality_band(100.0) == quality_band(90.0) == 9 and quality_band(89.9) == 8


def test_rows_list_out_of_service_routes_after_the_ranked_ones() -> None:
    states = [route("down", 1, 0.0, state="down", in_service=False), route("up", 50, 91.0)]
    rows = load_balancer_rows(states, "web")
    assert [(r.route, r.in_service) for r in rows] == [("up", True), ("down", False)]
