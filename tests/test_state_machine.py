"""The path state machine as a pure class with an injected clock: every transition,
hold-down escalation (capped) and decay."""

from enforcer.holddown import HoldDownPolicy
from enforcer.state_machine import PathMachine, TrackState, Transition


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


WINDOW = 5.0


def make(base: float = 60.0, cap: float = 3600.0) -> tuple[PathMachine, FakeClock]:
    clock = FakeClock()
    return PathMachine(HoldDownPolicy(base, cap), clock), clock


def window(
    machine: PathMachine, clock: FakeClock, passed: bool | None, reason: str = ""
) -> list[Transition]:
    """Close the window that ends at the clock's current time, then advance the clock."""
    end = clock.now
    transitions = machine.observe(passed, reason, end - WINDOW, end)
    clock.now += WINDOW
    return transitions


def test_unknown_until_enough_samples_then_up() -> None:
    machine, clock = make()
    assert machine.state == "unknown"
    assert window(machine, clock, None) == []
    assert machine.state == "unknown"
    [transition] = window(machine, clock, True)
    assert (transition.previous, transition.state) == ("unknown", "up")
    assert machine.track.meets_sla


def test_unknown_to_down_on_failure() -> None:
    machine, clock = make()
    [transition] = window(machine, clock, False, "tcp/high error 62 % > 50 %")
    assert (transition.previous, transition.state) == ("unknown", "down")
    assert transition.reason == "tcp/high error 62 % > 50 %"
    assert machine.track.hold_down_until == transition.at + 60


def test_up_down_hold_down_probation_up() -> None:
    machine, clock = make()
    window(machine, clock, True)
    [down] = window(machine, clock, False, "bad")
    assert down.state == "down"
    assert machine.track.multiplier == 1
    # windows during the hold-down change nothing, even passing ones
    for _ in range(3):
        assert window(machine, clock, True) == []
        assert machine.state == "down"
    assert machine.tick() is None
    clock.now = down.at + 60
    probation = machine.tick()
    assert probation is not None and probation.state == "probation"
    assert probation.at == down.at + 60
    # a window that began before probation holds old data: tracking restarted, not judged
    assert machine.observe(False, "old", probation.at - 2, probation.at + 3) == []
    assert machine.state == "probation"
    [up] = machine.observe(True, "", probation.at, probation.at + WINDOW)
    assert (up.previous, up.state) == ("probation", "up")


def test_probation_failure_goes_down_with_doubled_hold_down() -> None:
    machine, clock = make(base=60)
    [down] = window(machine, clock, False, "bad")
    clock.now = down.at + 60
    machine.tick()
    [again] = machine.observe(False, "still bad", clock.now, clock.now + WINDOW)
    assert (again.previous, again.state) == ("probation", "down")
    assert machine.track.multiplier == 2
    assert machine.track.hold_down_until == again.at + 120


def test_hold_down_is_capped() -> None:
    machine, clock = make(base=60, cap=150)
    expected = [60, 120, 150, 150]
    for hold in expected:
        transition = machine.fail("link down", clock.now)
        assert transition is not None
        assert machine.track.hold_down_until == clock.now + hold
        clock.now = machine.track.hold_down_until or 0
        assert machine.tick() is not None


def test_multiplier_decays_one_step_per_hold_down_of_health() -> None:
    machine, clock = make(base=60)
    for _ in range(3):
        machine.fail("bad", clock.now)
        clock.now = machine.track.hold_down_until or 0
        machine.tick()
    assert machine.track.multiplier == 3
    [up] = machine.observe(True, "", clock.now, clock.now + WINDOW)
    assert up.state == "up"
    start = up.at
    machine.observe(True, "", start + 55, start + 59)
    assert machine.track.multiplier == 3
    machine.observe(True, "", start + 56, start + 61)
    assert machine.track.multiplier == 2
    machine.observe(True, "", start + 180, start + 185)
    assert machine.track.multiplier == 0
    # after full decay, the next failure gets the base hold-down again
    down = machine.fail("bad", start + 200)
    assert down is not None
    assert machine.track.hold_down_until == start + 260


def test_fast_path_failure_acts_at_once_and_is_idempotent_while_down() -> None:
    machine, clock = make()
    window(machine, clock, True)
    first = machine.fail("3 consecutive failures", 1003.5)
    assert first is not None and first.at == 1003.5 and first.state == "down"
    assert machine.fail("again", 1004.0) is None
    assert machine.track.multiplier == 1


def test_expired_hold_down_noticed_by_a_window_without_tick() -> None:
    machine, clock = make(base=10)
    [down] = window(machine, clock, False, "bad")
    clock.now = down.at + 30
    transitions = machine.observe(True, "", down.at + 20, down.at + 25)
    assert [t.state for t in transitions] == ["probation", "up"]


def test_insufficient_samples_keep_probation() -> None:
    machine, clock = make(base=10)
    [down] = window(machine, clock, False, "bad")
    clock.now = down.at + 10
    machine.tick()
    assert machine.observe(None, "", clock.now, clock.now + WINDOW) == []
    assert machine.state == "probation"


def test_restored_track_keeps_hold_down() -> None:
    clock = FakeClock(2000.0)
    track = TrackState(state="down", since=1990.0, hold_down_until=2050.0, multiplier=2)
    machine = PathMachine(HoldDownPolicy(60, 3600), clock, track)
    assert machine.tick() is None
    clock.now = 2050.0
    transition = machine.tick()
    assert transition is not None and transition.state == "probation"
