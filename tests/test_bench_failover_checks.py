"""The failover bench's judgements as pure units: the false-alarm statistics and the
hold-down check's reading of path 1's states (pathwatch.bench.failover_alarms, _hold)."""

from __future__ import annotations

import pytest

from pathwatch.bench.failover_alarms import (
    FalseAlarms,
    ServiceAlarms,
    WindowTally,
    alarms_target,
    binomial_tail,
    expected_fast_downs,
    expected_window_downs,
    higher_by_chance,
    in_service_seconds,
    poisson_interval,
)
from pathwatch.bench.failover_hold import HoldCheck, observe
from schemas.wire import LaneStats, PathState, WindowStats

GW1, GW2 = "gw1", "gw2"


def state(updated: float, in_service: bool, hold_until: float | None = None) -> PathState:
    return PathState(
        service="svc",
        route="path-1",
        state="up" if in_service else "down",
        in_service=in_service,
        updated=updated,
        hold_down_until=hold_until,
        reason="test",
    )


def test_poisson_intervals_match_the_tables() -> None:
    assert poisson_interval(0) == pytest.approx((0.0, 3.689), abs=1e-3)
    assert poisson_interval(1) == pytest.approx((0.0253, 5.572), abs=1e-3)
    assert poisson_interval(15) == pytest.approx((8.395, 24.740), abs=1e-3)


def test_binomial_tail_and_the_equal_rate_chance() -> None:
    assert binomial_tail(0, 5, 0.3) == pytest.approx(1.0)
    assert binomial_tail(2, 2, 0.5) == pytest.approx(0.25)
    even = ServiceAlarms(["w"] * 15, 240.0)
    assert higher_by_chance(even, ServiceAlarms(["w"] * 14, 240.0)) == pytest.approx(
        binomial_tail(15, 29, 0.5)
    )
    # the same count in half the time in service is a higher rate: less likely by chance
    assert higher_by_chance(ServiceAlarms(["w"] * 15, 120.0), ServiceAlarms(["w"] * 14, 240.0)) < (
        higher_by_chance(even, ServiceAlarms(["w"] * 14, 240.0))
    )


def test_time_in_service_follows_the_states_and_clamps_to_the_period() -> None:
    states = [(0, state(5.0, True)), (0, state(20.0, False)), (0, state(30.0, True))]
    assert in_service_seconds([(0.0, s) for _, s in states], 10.0, 50.0) == pytest.approx(30.0)
    earlier_down = [(0.0, state(1.0, False)), (0.0, state(15.0, True))]
    assert in_service_seconds(earlier_down, 10.0, 20.0) == pytest.approx(5.0)


def test_expected_counts_of_independent_losses() -> None:
    alarms = FalseAlarms(240.0, 5.0, probe_interval=0.1, detection_window=1.0)
    assert alarms.exchange_loss == pytest.approx(0.0975)
    # more than 25 % of 10 probes: 3 or more lost, about 6.6 % of windows
    assert expected_window_downs(alarms, 100.0) == pytest.approx(6.6, abs=0.05)
    assert expected_fast_downs(alarms, 100.0) == pytest.approx(1000 * 0.9025 * 0.0975**3)


def test_the_target_prints_both_counts_and_rates() -> None:
    alarms = FalseAlarms(240.0, 5.0, probe_interval=0.1, detection_window=1.0)
    alarms.confirm_on = ServiceAlarms(["consecutive failures"] + ["window"] * 14, 200.0)
    alarms.confirm_off = ServiceAlarms(["window"] * 14, 190.0)
    first, second = alarms_target(alarms)
    assert "counts 15 vs 14: NOT met" in first
    assert "per minute in service 4.50 vs 4.42: NOT met" in first
    assert "no significant difference" in second


def test_a_path_held_across_two_expiries_passes() -> None:
    check = HoldCheck(hold_down=1.0, expiries_wanted=2)
    states = [
        (0.0, state(99.0, True)),
        (0.0, state(100.2, False, hold_until=101.2)),
        (0.0, state(101.2, False, hold_until=102.2)),  # extended at expiry
        (0.0, state(102.2, False, hold_until=103.2)),
    ]
    observe(check, states, [(100.25, GW2)], GW1, fault_wall=100.0, now=102.9)
    assert check.taken_down == pytest.approx(0.2)
    assert check.expiries == pytest.approx([1.2, 2.2])
    assert check.back_in_service == [] and check.route_back == []
    assert check.passed


def test_probation_during_the_fault_fails_and_a_replaced_hold_down_is_no_expiry() -> None:
    check = HoldCheck(hold_down=1.0, expiries_wanted=2)
    states = [
        (0.0, state(100.2, False, hold_until=101.2)),
        (0.0, state(100.5, False, hold_until=101.5)),  # replaced before it ran out
        (0.0, state(101.5, True)),  # probation puts the dead path back in service
        (0.0, state(101.7, False, hold_until=102.7)),
    ]
    observe(check, states, [(100.25, GW2), (101.52, GW1)], GW1, fault_wall=100.0, now=103.0)
    assert check.expiries == pytest.approx([1.5, 2.7])
    assert [at for at, _, _ in check.back_in_service] == pytest.approx([1.5])
    assert check.route_back == pytest.approx([1.52])
    assert not check.passed


def test_windows_are_tallied_on_their_aggregate_lanes() -> None:
    def lane(destination: str, count: int, errors: int) -> LaneStats:
        return LaneStats(
            protocol="udp",
            traffic_class="best-effort",
            destination=destination,
            count=count,
            errors=errors,
            error_pct=errors / count * 100,
        )

    tally = WindowTally()
    for errors in (1, 3):
        window = WindowStats(
            service="svc",
            route="path-1",
            window_start=0.0,
            window_end=1.0,
            lanes=[lane("", 10, errors), lane("192.0.2.9", 10, errors)],
        )
        tally.add(window)
    assert (tally.windows, tally.probes, tally.errors, tally.over_limit) == (2, 20, 4, 1)
    assert "4 of 20 probes lost (20.00 %), 1 windows over 25 %" in tally.describe()
