"""The reply-timeout estimator and the confirm schedule: pure units, clock passed in."""

from __future__ import annotations

import pytest

from agents.probe.confirm import ConfirmSchedule
from agents.probe.rtt import RttEstimator, TimeoutBounds

BOUNDS = TimeoutBounds(floor=0.01, ceiling=1.0)


def test_timeout_is_the_ceiling_before_any_reply() -> None:
    assert RttEstimator(BOUNDS).timeout() == 1.0


def test_first_sample_sets_srtt_and_half_of_it_as_variation() -> None:
    rtt = RttEstimator(BOUNDS)
    rtt.sample(0.2)
    assert rtt.srtt == pytest.approx(0.2)
    assert rtt.rttvar == pytest.approx(0.1)
    assert rtt.timeout() == pytest.approx(0.2 + 4 * 0.1)


def test_later_samples_follow_rfc_6298_gains() -> None:
    rtt = RttEstimator(BOUNDS)
    rtt.sample(0.1)
    rtt.sample(0.3)
    # RTTVAR = 3/4 * 0.05 + 1/4 * |0.1 - 0.3|; SRTT = 7/8 * 0.1 + 1/8 * 0.3
    assert rtt.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.2)
    assert rtt.srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.3)
    assert rtt.srtt is not None
    assert rtt.timeout() == pytest.approx(rtt.srtt + 4 * rtt.rttvar)


def test_a_fast_steady_path_is_held_at_the_floor() -> None:
    rtt = RttEstimator(BOUNDS)
    for _ in range(50):
        rtt.sample(0.0001)
    assert rtt.timeout() == 0.01


def test_the_ceiling_caps_a_slow_jittery_path() -> None:
    rtt = RttEstimator(BOUNDS)
    for value in (0.2, 0.9, 0.1, 0.8):
        rtt.sample(value)
    assert rtt.timeout() == 1.0


def test_timeout_grows_with_jitter_and_shrinks_again() -> None:
    rtt = RttEstimator(TimeoutBounds(0.001, 1.0))
    for _ in range(30):
        rtt.sample(0.005)
    steady = rtt.timeout()
    rtt.sample(0.05)
    assert rtt.timeout() > steady
    for _ in range(60):
        rtt.sample(0.005)
    assert rtt.timeout() == pytest.approx(steady, rel=0.2)


def test_negative_samples_are_ignored_and_bounds_are_checked() -> None:
    rtt = RttEstimator(BOUNDS)
    rtt.sample(-1.0)
    assert rtt.samples == 0 and rtt.timeout() == 1.0
    with pytest.raises(ValueError):
        TimeoutBounds(0.5, 0.1)


def test_a_run_of_misses_is_confirmed_at_the_threshold_with_its_times() -> None:
    schedule = ConfirmSchedule(threshold=3, interval=0.01)
    assert schedule.missed(now=10.02, sent_at=10.0) is None
    assert schedule.confirming
    assert schedule.reprobe_due(10.02)
    schedule.reprobe_sent(10.02)
    assert not schedule.reprobe_due(10.025)
    assert schedule.next_wakeup() == pytest.approx(10.03)
    assert schedule.missed(now=10.035, sent_at=10.02) is None
    schedule.reprobe_sent(10.03)
    confirmed = schedule.missed(now=10.045, sent_at=10.03)
    assert confirmed is not None
    assert (confirmed.misses, confirmed.reprobes) == (3, 2)
    assert (confirmed.first_sent, confirmed.noticed, confirmed.confirmed) == (10.0, 10.02, 10.045)
    # reported once: further misses of the same run say nothing, and re-probing stops
    assert schedule.missed(now=10.1, sent_at=10.09) is None
    assert not schedule.confirming and schedule.next_wakeup() is None


def test_a_reply_ends_the_run_and_the_count_starts_again() -> None:
    schedule = ConfirmSchedule(threshold=3, interval=0.01)
    schedule.missed(now=1.0, sent_at=0.99)
    schedule.reprobe_sent(1.0)
    schedule.missed(now=1.01, sent_at=1.0)
    assert schedule.replied(now=1.012)
    assert not schedule.confirming and schedule.next_wakeup() is None
    assert not schedule.replied(now=1.02)  # no run open
    assert schedule.missed(now=2.0, sent_at=1.99) is None
    assert schedule.misses == 1


def test_no_more_reprobes_than_the_threshold_needs() -> None:
    schedule = ConfirmSchedule(threshold=4, interval=0.01)
    schedule.missed(now=0.0, sent_at=0.0)
    sent = 0
    now = 0.0
    while (wake := schedule.next_wakeup()) is not None:
        now = max(now, wake)
        assert schedule.reprobe_due(now)
        schedule.reprobe_sent(now)
        sent += 1
    assert sent == 3
    assert now == pytest.approx(0.02)


def test_after_a_confirmed_run_a_reply_rearms_it() -> None:
    schedule = ConfirmSchedule(threshold=1, interval=0.01)
    assert schedule.missed(now=0.0, sent_at=0.0) is not None
    assert schedule.next_wakeup() is None  # threshold 1: nothing to re-probe
    schedule.replied(now=0.5)
    assert schedule.missed(now=1.0, sent_at=1.0) is not None


def test_a_late_reply_to_an_attempt_of_a_reported_run_refutes_it() -> None:
    schedule = ConfirmSchedule(threshold=3, interval=0.01)
    assert not schedule.refutes(sent_at=0.0)  # nothing reported
    schedule.missed(now=0.02, sent_at=0.0)
    schedule.missed(now=0.04, sent_at=0.02)
    assert not schedule.refutes(sent_at=0.0)  # not reported yet: the reply just ends the run
    assert schedule.missed(now=0.05, sent_at=0.03) is not None
    assert schedule.refutes(sent_at=0.0)  # answered after all: late, not lost
    assert schedule.refutes(sent_at=0.03)
    assert not schedule.refutes(sent_at=0.1)  # the next attempt answering says nothing
    schedule.replied(now=0.12)
    assert not schedule.refutes(sent_at=0.0)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        ConfirmSchedule(threshold=0, interval=0.01)
    with pytest.raises(ValueError):
        ConfirmSchedule(threshold=3, interval=0)


# --- who confirms what: the agent's plan and the aggregator's fast path agree ------------

RULE_CONFIG = """
udp-probe-profiles:
  quick: {probe-interval: 0.1, probe-duration: 0.1, number-of-attempts: 1,
          probe-address: [127.0.0.1], port: 7, reply-timeout: {min: 0.005, max: 0.5}}
  plain: {probe-interval: 0.1, probe-duration: 0.1, number-of-attempts: 1,
          probe-address: [127.0.0.1], port: 7, confirm-interval: 0}
tcp-probe-profiles:
  held: {probe-interval: 1, probe-duration: 1, number-of-attempts: 1,
         probe-address: [127.0.0.1], port: 7, hold-open: 50}
http-probe-profiles:
  web: {url: "http://127.0.0.1:8/"}
services:
  s:
    service-routes:
      r:
        next-hop: {node: n1}
        reachability-detection:
          probes:
            - {name: quick, udp-probe-profile: quick}
            - {name: plain, udp-probe-profile: plain}
            - {name: held, tcp-probe-profile: held}
            - {name: web, http-probe-profile: web}
      unconfirmed:
        next-hop: {node: n1}
        reachability-detection:
          consecutive-failures: 0
          probes: [{name: quick, udp-probe-profile: quick}]
"""


def test_the_plan_and_the_aggregator_agree_on_confirmed_probes() -> None:
    from agents.probeplan import build_plan
    from aggregator.core import route_windowing
    from pathwatch.runtime.configfile import parse_config

    config = parse_config(RULE_CONFIG).config
    plans = {plan.route: plan for plan in build_plan(config, None, None)}
    confirm = {probe.name: probe.confirm for probe in plans["r"].probes}
    quick = confirm["quick"]
    assert quick is not None
    assert (quick.threshold, quick.interval) == (3, 0.01)
    # the ceiling never exceeds probe-duration
    assert (quick.bounds.floor, quick.bounds.ceiling) == (0.005, 0.1)
    held = confirm["held"]
    assert held is not None and held.extra == pytest.approx(0.05)
    assert held.bounds.ceiling == 1.0  # max defaults to probe-duration
    assert confirm["plain"] is None and confirm["web"] is None
    assert [probe.confirm for probe in plans["unconfirmed"].probes] == [None]
    specs = {spec.route: spec.agent_confirmed for spec in route_windowing(config)}
    assert specs == {"r": frozenset({"quick", "held"}), "unconfirmed": frozenset()}


def test_the_aggregator_counts_no_failures_of_probes_their_agent_confirms() -> None:
    from aggregator.fastpath import FailureRuns
    from schemas.wire import Lane

    runs = FailureRuns(2, agent_confirmed=frozenset({"quick"}))
    confirmed = Lane("udp", "best-effort", "probe", "127.0.0.1", "quick")
    plain = Lane("udp", "best-effort", "probe", "127.0.0.1", "plain")
    passive = Lane("udp", "best-effort", "passive", "127.0.0.1", "quick")
    assert runs.failure(confirmed, "timeout") is None
    assert runs.failure(confirmed, "timeout") is None
    assert runs.failure(plain, "timeout") is None
    assert runs.failure(plain, "timeout") is not None
    assert runs.failure(passive, "timeout") is None
    assert runs.failure(passive, "timeout") is not None
