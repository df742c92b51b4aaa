"""The healer's decision table, backoff and settings: pure, with an injected clock."""

from __future__ import annotations

import pytest

from agents.healer.decision import Action, Backoff, HealPolicy, table
from agents.healer.settings import LivenessSettings, SettingsError, parse_duration
from schemas.config import HealerConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("control_up", "data_up", "action"),
    [
        (True, True, Action.NOTHING),
        (True, False, Action.RESELECT),
        (False, True, Action.KEEP),
        (False, False, Action.RESELECT),
    ],
)
def test_the_table_of_design_md(control_up: bool, data_up: bool, action: Action) -> None:
    assert table(control_up, data_up) is action
    assert HealPolicy(Clock()).decide(control_up, data_up).action is action


def test_working_data_plane_is_kept_and_same_endpoint_rerequested_once() -> None:
    policy = HealPolicy(Clock())
    assert policy.decide(True, True).action is Action.NOTHING
    for _ in range(5):  # control plane down for a while: never a reselect
        assert policy.decide(False, True).action is Action.KEEP
    assert policy.decide(True, True).action is Action.REREQUEST
    assert policy.decide(True, True).action is Action.NOTHING
    assert policy.heals == 0


def test_repeated_failed_heals_back_off_with_jitter_and_reset_on_success() -> None:
    clock = Clock()
    policy = HealPolicy(clock, Backoff(base=1.0, cap=8.0, jitter=0.0), draw=lambda: 0.5)
    delays = []
    for _ in range(6):
        assert policy.decide(True, False).action is Action.RESELECT
        policy.heal_started()
        policy.heal_finished(False)
        wait = policy.decide(True, False)
        assert wait.action is Action.WAIT
        assert wait.retry_at is not None
        delays.append(wait.retry_at - clock.now)
        clock.now = wait.retry_at
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    policy.data_plane_ok()
    assert policy.failures == 0
    assert policy.decide(True, False).action is Action.RESELECT


def test_an_unproven_heal_also_waits_so_two_dead_paths_cannot_loop() -> None:
    clock = Clock()
    policy = HealPolicy(clock, Backoff(base=0.5, cap=30, jitter=0.0))
    heals = 0
    for _ in range(200):  # 20 s of evaluations every 100 ms, data plane always down
        if policy.decide(False, False).action is Action.RESELECT:
            heals += 1
            policy.heal_started()
            policy.heal_finished(True)
        clock.now += 0.1
    assert heals <= 6


def test_jitter_stays_within_bounds() -> None:
    backoff = Backoff(base=2.0, cap=30.0, jitter=0.25)
    assert backoff.delay(1, 0.0) == pytest.approx(1.5)
    assert backoff.delay(1, 0.999999) == pytest.approx(2.5, rel=1e-5)
    assert backoff.delay(0, 0.3) == 0.0


def test_ending_the_backoff_allows_a_reselect_at_once_and_keeps_the_count() -> None:
    clock = Clock()
    policy = HealPolicy(clock, Backoff(base=4.0, cap=30.0, jitter=0.0))
    for _ in range(3):
        clock.now = max(clock.now, policy.retry_at)
        policy.heal_started()
        policy.heal_finished(True)
    assert policy.decide(True, False).action is Action.WAIT
    assert policy.backoff_remaining() == pytest.approx(16.0)
    assert policy.end_backoff() is True
    assert policy.decide(True, False).action is Action.RESELECT
    assert policy.end_backoff() is False  # nothing left to end
    policy.heal_started()
    policy.heal_finished(True)
    assert policy.failures == 4  # the count (and the next wait) keeps growing until proven
    assert policy.backoff_remaining() == pytest.approx(30.0)


def test_no_rerequest_when_the_control_plane_was_never_up() -> None:
    policy = HealPolicy(Clock())
    assert policy.decide(False, True).action is Action.KEEP
    assert policy.decide(True, True).action is Action.NOTHING


def test_a_heal_in_progress_is_not_started_twice() -> None:
    policy = HealPolicy(Clock())
    policy.heal_started()
    assert policy.decide(True, False).action is Action.WAIT


def test_settings_environment_wins_over_config() -> None:
    config = HealerConfig(liveness_check_interval=0.5, liveness_check_timeout=2.0)
    assert LivenessSettings.resolve(config, {}) == LivenessSettings(True, 0.5, 2.0)
    env = {
        "NSM_LIVENESS_CHECK_ENABLED": "false",
        "NSM_LIVENESS_CHECK_INTERVAL": "100ms",
        "NSM_LIVENESS_CHECK_TIMEOUT": "1.5s",
    }
    assert LivenessSettings.resolve(config, env) == LivenessSettings(False, 0.1, 1.5)
    assert LivenessSettings.resolve(HealerConfig(), {}) == LivenessSettings(True, 0.2, 1.0)


@pytest.mark.parametrize("bad", ["", "fast", "-1s", "0ms", "1 parsec"])
def test_bad_durations_are_refused(bad: str) -> None:
    with pytest.raises(SettingsError):
        parse_duration(bad, "NSM_LIVENESS_CHECK_INTERVAL")
