"""Probe-verified recovery as pure, clock-injected units: a machine of a route with
active probes leaves its hold-down only when the probes passed since the fault,
else the hold-down is extended with the next multiplier (enforcer.holddown,
enforcer.state_machine); organic-traffic routes keep probation at the hold-down end."""

from enforcer.holddown import HoldDownPolicy, RecoveryEvidence
from enforcer.state_machine import PathMachine
from schemas.wire import LaneStats
from tests.test_state_machine import FakeClock

BASE = 10.0


def icmp(destination: str, count: int, errors: int = 0) -> LaneStats:
    return LaneStats(
        protocol="icmp",
        traffic_class="best-effort",
        probe="ping",
        destination=destination,
        count=count,
        errors=errors,
    )


def tcp(count: int, errors: int = 0, source: str = "probe") -> LaneStats:
    return LaneStats(
        protocol="tcp",
        traffic_class="high",
        source=source,  # type: ignore[arg-type]
        count=count,
        errors=errors,
    )


def probe_verified(required: int = 3) -> RecoveryEvidence:
    return RecoveryEvidence(required, frozenset({"ping"}), frozenset({"tcp"}))


def machine_down(
    recovery: RecoveryEvidence, base: float = BASE, cap: float = 3600.0
) -> tuple[PathMachine, FakeClock]:
    clock = FakeClock()
    machine = PathMachine(HoldDownPolicy(base, cap, recovery.required), clock, recovery=recovery)
    assert machine.fail("ping 3 consecutive failures", clock.now) is not None
    return machine, clock


def test_probes_still_failing_at_the_hold_down_end_extend_it_and_keep_the_path_down() -> None:
    recovery = probe_verified()
    machine, clock = machine_down(recovery)
    down_at = clock.now
    recovery.observe([icmp("127.0.0.1", 4, errors=4), tcp(10)], down_at + 5)
    clock.now = down_at + BASE
    extended = machine.tick()
    assert extended is not None and (extended.previous, extended.state) == ("down", "down")
    assert machine.state == "down"
    assert machine.track.multiplier == 2
    assert machine.track.hold_down_until == down_at + BASE + 2 * BASE
    assert "hold-down extended to 20 s (x2)" in extended.reason
    assert "ping 127.0.0.1 (icmp/best-effort) 0 of 3 replies ok in a row" in extended.reason
    assert machine.track.reason == "ping 3 consecutive failures"  # the fault is kept
    assert recovery.held.startswith("probes not passed since the fault: ping 127.0.0.1")
    # still failing at the second end: extended again (x3), never on probation
    recovery.observe([icmp("127.0.0.1", 4, errors=2), tcp(10)], down_at + 25)
    clock.now = down_at + BASE + 2 * BASE
    again = machine.tick()
    assert again is not None and again.state == "down"
    assert machine.track.multiplier == 3
    assert machine.track.hold_down_until == down_at + 30 + 30
    assert "ping 127.0.0.1 (icmp/best-effort) 2 of 3 replies ok in a row" in again.reason
    assert machine.tick() is None  # nothing more until that end


def test_probes_passing_since_the_fault_bring_the_path_back_on_probation() -> None:
    recovery = probe_verified()
    machine, clock = machine_down(recovery)
    down_at = clock.now
    recovery.observe([icmp("127.0.0.1", 2, errors=1), tcp(10, errors=2)], down_at + 5)
    assert recovery.missing()
    recovery.observe([icmp("127.0.0.1", 4), tcp(10)], down_at + 10)
    assert recovery.missing() == "" and recovery.verified_since == down_at + 10
    clock.now = down_at + BASE
    back = machine.tick()
    assert back is not None and (back.previous, back.state) == ("down", "probation")
    assert back.at == down_at + BASE
    assert "probes passed since the fault (3 replies in a row on every lane)" in back.reason
    assert machine.track.multiplier == 1 and machine.track.hold_down_until is None
    [up] = machine.observe(True, "", back.at, back.at + 5)
    assert up.state == "up"


def test_a_window_with_errors_keeps_only_its_successes_and_fast_evidence_resets_all() -> None:
    recovery = probe_verified(required=6)
    machine, clock = machine_down(recovery)
    recovery.observe([icmp("127.0.0.1", 4)], clock.now + 5)
    recovery.observe([icmp("127.0.0.1", 4, errors=1)], clock.now + 10)
    assert recovery.streaks == {("icmp", "best-effort", "probe", "127.0.0.1", "ping"): 3}
    recovery.observe([icmp("127.0.0.1", 4, errors=4)], clock.now + 12)
    assert recovery.streaks == {("icmp", "best-effort", "probe", "127.0.0.1", "ping"): 0}
    recovery.observe([icmp("127.0.0.1", 4)], clock.now + 15)
    recovery.observe([icmp("127.0.0.1", 4)], clock.now + 20)
    assert recovery.missing() == ""
    # consecutive failures reported while down: the fault has not cleared after all
    assert machine.fail("ping 3 consecutive failures", clock.now + 21) is None
    assert recovery.missing() == "no probe reply since the fault"
    clock.now += BASE
    held = machine.tick()
    assert held is not None and held.state == "down"


def test_every_enforced_probe_lane_must_pass_and_others_do_not_count() -> None:
    recovery = probe_verified()
    machine, clock = machine_down(recovery)
    recovery.observe(
        [
            icmp("127.0.0.1", 4),
            icmp("127.0.0.2", 4, errors=4),
            tcp(10, errors=10, source="passive"),  # real traffic: not a probe lane
            LaneStats(
                protocol="icmp", traffic_class="best-effort", probe="other", count=3, errors=3
            ),
        ],
        clock.now + 5,
    )
    assert "127.0.0.2" in recovery.missing() and "127.0.0.1" not in recovery.missing()
    assert "passive" not in recovery.missing() and "other" not in recovery.missing()
    recovery.observe([icmp("127.0.0.2", 4)], clock.now + 10)
    assert recovery.missing() == ""
    clock.now += BASE
    back = machine.tick()
    assert back is not None and back.state == "probation"


def test_no_probe_reply_at_all_holds_the_path() -> None:
    recovery = probe_verified()
    machine, clock = machine_down(recovery)
    clock.now += BASE
    held = machine.tick()
    assert held is not None and held.state == "down"
    assert recovery.held == "no probe reply since the fault"


def test_organic_traffic_routes_keep_probation_at_the_hold_down_end() -> None:
    recovery = RecoveryEvidence()  # passive-only routes, or recovery-probes 0
    assert recovery.rule == "organic-traffic"
    machine, clock = machine_down(recovery)
    recovery.observe([icmp("127.0.0.1", 4, errors=4)], clock.now + 5)
    clock.now += BASE
    back = machine.tick()
    assert back is not None and back.state == "probation"
    assert (
        back.reason == "hold-down over, on probation for one window (ping 3 consecutive failures)"
    )


def test_extensions_stop_growing_at_the_cap() -> None:
    recovery = probe_verified()
    machine, clock = machine_down(recovery, base=10, cap=25)
    holds = []
    for _ in range(4):
        clock.now = machine.track.hold_down_until or 0
        assert machine.tick() is not None
        holds.append((machine.track.hold_down_until or 0) - clock.now)
    assert holds == [20, 25, 25, 25]
    assert machine.track.multiplier == 3


def test_without_a_hold_down_the_path_comes_back_when_the_probes_pass() -> None:
    """hold-down 0: no waiting, but no traffic either until the probes pass; looked at
    again at each tick without changing anything in between."""
    recovery = probe_verified()
    machine, clock = machine_down(recovery, base=0, cap=0)
    down_at = clock.now
    clock.now += 1
    held = machine.tick()
    assert held is not None and held.state == "down" and machine.track.multiplier == 1
    clock.now += 1
    assert machine.tick() is None and machine.state == "down"
    recovery.observe([icmp("127.0.0.1", 4)], down_at + 5)
    clock.now = down_at + 6
    back = machine.tick()
    assert back is not None and back.state == "probation" and back.at == down_at + 5


def test_a_new_fault_clears_the_held_reason_and_the_replies() -> None:
    recovery = probe_verified()
    machine, clock = machine_down(recovery)
    recovery.observe([icmp("127.0.0.1", 4)], clock.now + 5)
    clock.now += BASE
    back = machine.tick()
    assert back is not None and back.state == "probation"
    [down] = machine.observe(False, "ping loss 100 %", clock.now, clock.now + 5)
    assert down.state == "down" and recovery.streaks == {} and recovery.held == ""


def test_a_lossy_path_within_its_limits_comes_back_and_a_dead_one_never_does() -> None:
    """Every window of a lossy lane has an error; its successes still count (the
    probation window judges its limits). A dead lane has no success at all."""
    lossy = probe_verified()
    machine, clock = machine_down(lossy)
    for index in range(3):
        lossy.observe([tcp(10, errors=2)], clock.now + 5 * index)
    clock.now += BASE
    back = machine.tick()
    assert back is not None and back.state == "probation"
    dead = probe_verified()
    machine, clock = machine_down(dead)
    for index in range(3):
        dead.observe([tcp(10, errors=10)], clock.now + 5 * index)
    clock.now += BASE
    held = machine.tick()
    assert held is not None and held.state == "down"
    assert dead.held == "probes not passed since the fault: tcp/high 0 of 3 replies ok in a row"
