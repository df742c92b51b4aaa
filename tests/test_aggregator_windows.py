"""Window closing, ripening, late, duplicate, future, clock skew and the fast path, with an
injected clock."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from aggregator.core import Aggregator
from pathwatch.runtime.configfile import parse_config
from schemas.codec import encode
from schemas.wire import Measurement, MeasurementBatch

CONFIG = parse_config(
    """
aggregator: {skew-alarm: 1, max-future-skew: 5}
services:
  web:
    address: [127.0.0.1/32]
    service-routes:
      r1:
        next-hop: {node: n1}
        reachability-detection: {detection-window: 5, consecutive-failures: 3}
      r10:
        next-hop: {node: n1}
        reachability-detection: {detection-window: 10, consecutive-failures: 0}
""",
    "test.yaml",
).config
T0 = 1_000_000.0  # a multiple of 5 and 10


def batch(
    seq: int,
    items: list[Measurement],
    *,
    sent: float = T0,
    agent: str = "a1",
    route: str = "r1",
) -> bytes:
    return encode(
        MeasurementBatch(
            agent=agent, node="n1", seq=seq, sent=sent, service="web", route=route, items=items
        )
    )


def ping(ts: float, outcome: str = "ok", latency: float | None = 1.0) -> Measurement:
    return Measurement(
        ts=ts,
        protocol="icmp",
        destination="127.0.0.1",
        probe="ping",
        outcome=outcome,  # type: ignore[arg-type]
        latency_ms=latency if outcome == "ok" else None,
    )


def test_windows_are_aligned_and_close_after_the_allowed_lateness() -> None:
    aggregator = Aggregator(CONFIG)
    aggregator.handle("pw.meas.web.r1", batch(1, [ping(T0 + 1), ping(T0 + 6)]), T0 + 1)
    aggregator.handle("pw.meas.web.r10", batch(2, [ping(T0 + 3)], route="r10"), T0 + 3)
    # default lateness: min(1 s, window / 2) -> r1 closes [T0, T0+5) at T0+6
    assert aggregator.close_due(T0 + 5.99) == []
    closed = aggregator.close_due(T0 + 6.0)
    assert [(s.route, s.window_start, s.window_end) for s in closed] == [("r1", T0, T0 + 5)]
    assert closed[0].agents == ["a1"] and closed[0].lanes[0].count == 1
    assert [(s.route, s.window_start) for s in aggregator.close_due(T0 + 11.0)] == [
        ("r1", T0 + 5),
        ("r10", T0),
    ]


def test_a_ripened_window_closes_with_its_lanes_unless_a_late_measurement_came() -> None:
    aggregator = Aggregator(CONFIG)
    aggregator.handle("pw.meas.web.r1", batch(1, [ping(T0 + 1), ping(T0 + 2)]), T0 + 2)
    aggregator.handle("pw.meas.web.r10", batch(2, [ping(T0 + 1)], route="r10"), T0 + 2)
    assert aggregator.ripen_due(T0 + 4.99) == 0  # nothing has ended yet
    assert aggregator.ripen_due(T0 + 5.0) == 1  # r1's [T0, T0+5), not r10's [T0, T0+10)
    window = aggregator.book.routes[("web", "r1")].windows[int(T0 // 5)]
    ripe = window.ripe_lanes
    assert ripe is not None and ripe[0].count == 2
    # a batch whose items are all late or in the future leaves the ripened lanes alone
    aggregator.handle("pw.meas.web.r1", batch(3, [ping(T0 - 30), ping(T0 + 90)]), T0 + 5.2)
    assert window.ripe_lanes is ripe
    closed = aggregator.close_due(T0 + 6.0)
    assert len(closed) == 1 and closed[0].lanes is ripe
    # ripened again, then a measurement within the lateness: the close counts it
    aggregator.handle("pw.meas.web.r1", batch(4, [ping(T0 + 6)]), T0 + 6)
    assert aggregator.ripen_due(T0 + 10.0) == 2  # r1's second window and r10's
    aggregator.handle("pw.meas.web.r1", batch(5, [ping(T0 + 9.5, latency=3.0)]), T0 + 10.5)
    closed = aggregator.close_due(T0 + 11.0)
    # both close at T0+11; r10's window opened first
    assert [(s.route, s.lanes[0].count) for s in closed] == [("r10", 1), ("r1", 2)]
    assert closed[1].lanes[0].latency_max_ms == 3.0


def test_end_times_do_not_pile_up_when_nothing_ripens() -> None:
    aggregator = Aggregator(CONFIG)
    for step in range(50):
        now = T0 + 5 * step + 1
        aggregator.handle("pw.meas.web.r1", batch(step, [ping(now)]), now)
        aggregator.close_due(now)
    # one open window left; the end times of the 49 closed ones are gone
    assert aggregator.book.open_windows() == 1
    assert len(aggregator.book._endings) == 1


#: (arrival step in seconds, item timestamps behind the arrival, ripen after it)
steps = st.lists(
    st.tuples(
        st.floats(min_value=0.05, max_value=2.0),
        st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=1, max_size=4),
        st.booleans(),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_ripening_never_changes_what_a_window_reports(
    schedule: list[tuple[float, list[float], bool]],
) -> None:
    ripening, plain = Aggregator(CONFIG), Aggregator(CONFIG)
    reported: dict[str, list[bytes]] = {"ripening": [], "plain": []}
    now = T0
    for seq, (step, behind, ripen) in enumerate(schedule):
        now += step
        data = batch(seq, [ping(now - back, latency=10.0 + back) for back in behind])
        for name, aggregator in (("ripening", ripening), ("plain", plain)):
            aggregator.handle("pw.meas.web.r1", data, now)
            reported[name] += [encode(stats) for stats in aggregator.close_due(now)]
        if ripen:
            ripening.ripen_due(now)
    for name, aggregator in (("ripening", ripening), ("plain", plain)):
        reported[name] += [encode(stats) for stats in aggregator.close_due(now + 100)]
    assume(reported["plain"])  # not every item of the schedule was late
    assert reported["ripening"] == reported["plain"]


def test_late_measurements_are_counted_and_dropped() -> None:
    aggregator = Aggregator(CONFIG)
    aggregator.handle("pw.meas.web.r1", batch(1, [ping(T0 + 1)]), T0 + 1)
    assert len(aggregator.close_due(T0 + 6.0)) == 1
    # ts T0+4 belongs to the closed window; T0+5.5 to the open one
    aggregator.handle("pw.meas.web.r1", batch(2, [ping(T0 + 4), ping(T0 + 5.5)]), T0 + 6.2)
    # never opened but already past its close time: late as well
    aggregator.handle("pw.meas.web.r1", batch(3, [ping(T0 - 20)]), T0 + 6.3)
    assert aggregator.counters.dropped["late"] == 2
    assert aggregator.counters.measurements == 2
    closed = aggregator.close_due(T0 + 11.0)
    assert len(closed) == 1 and closed[0].late == 2 and closed[0].lanes[0].count == 1


def test_within_the_lateness_a_measurement_still_counts() -> None:
    aggregator = Aggregator(CONFIG)
    aggregator.handle("pw.meas.web.r1", batch(1, [ping(T0 + 4.9)]), T0 + 5.9)
    assert aggregator.counters.dropped["late"] == 0
    assert aggregator.close_due(T0 + 6.0)[0].lanes[0].count == 1


def test_duplicates_are_dropped_but_a_restarted_agent_is_not() -> None:
    aggregator = Aggregator(CONFIG)
    data = batch(7, [ping(T0 + 1)])
    aggregator.handle("pw.meas.web.r1", data, T0 + 1)
    aggregator.handle("pw.meas.web.r1", data, T0 + 1.1)
    assert aggregator.counters.dropped["duplicate"] == 1
    # same seq, another sent time: the agent restarted and counts again
    aggregator.handle("pw.meas.web.r1", batch(7, [ping(T0 + 2)], sent=T0 + 2), T0 + 2)
    # same seq from another agent is not a duplicate either
    aggregator.handle("pw.meas.web.r1", batch(7, [ping(T0 + 2)], agent="a2"), T0 + 2)
    assert aggregator.counters.dropped["duplicate"] == 1
    closed = aggregator.close_due(T0 + 6)
    assert closed[0].lanes[0].count == 3 and closed[0].duplicates == 1
    assert closed[0].agents == ["a1", "a2"]


def test_future_timestamps_are_dropped() -> None:
    aggregator = Aggregator(CONFIG)
    aggregator.handle("pw.meas.web.r1", batch(1, [ping(T0 + 1), ping(T0 + 60)]), T0 + 1)
    assert aggregator.counters.dropped["future"] == 1
    assert aggregator.counters.measurements == 1
    assert aggregator.book.open_windows() == 1


def test_clock_skew_raises_once_after_it_lasted_and_clears() -> None:
    aggregator = Aggregator(CONFIG)  # skew-alarm 1 s, skew-alarm-after 30 s (default)
    for seq in range(3):
        aggregator.handle("pw.meas.web.r1", batch(seq, [ping(T0 + 1)], sent=T0 + 1 + 0.2), T0 + 1)
    assert aggregator.take_alarms() == []
    # the agent's clock jumps 3 s ahead: judged over 30 s of arrivals before the alarm
    for second in range(2, 32):
        now = T0 + second
        aggregator.handle("pw.meas.web.r1", batch(second + 10, [ping(now)], sent=now + 3), now)
        assert aggregator.take_alarms() == [], second
    now = T0 + 32
    aggregator.handle("pw.meas.web.r1", batch(99, [ping(now)], sent=now + 3), now)
    raised = aggregator.take_alarms()
    assert len(raised) == 1
    alarm = raised[0]
    assert (alarm.status, alarm.cause, alarm.agent, alarm.service) == (
        "raised",
        "clock-skew",
        "a1",
        "",
    )
    assert aggregator.skew.estimate("a1") == 3.0
    # back in step: once the skewed samples have left the estimate, the alarm clears
    for seq in range(100, 140):
        aggregator.handle("pw.meas.web.r1", batch(seq, [ping(T0 + 33)], sent=T0 + 33), T0 + 33)
    cleared = aggregator.take_alarms()
    assert [(a.status, a.id, a.raised_at) for a in cleared] == [
        ("cleared", alarm.id, alarm.raised_at)
    ]


def test_batches_that_waited_out_an_outage_raise_no_skew_alarm() -> None:
    """An agent in step, one batch a second; NATS stops for 20 s, then for 120 s: the
    batches made meanwhile arrive at once when it is back (old `sent` times), then
    fresh ones follow. The burst alone reads up to 20 s / 120 s behind."""
    aggregator = Aggregator(CONFIG)
    seq = 0

    def batch_at(made: float, arrives: float) -> None:
        nonlocal seq
        seq += 1
        aggregator.handle("pw.meas.web.r1", batch(seq, [ping(made)], sent=made), arrives)

    second = 0.0
    for outage in (20, 120):
        for _ in range(10):  # in step
            second += 1
            batch_at(T0 + second, T0 + second + 0.01)
        back = second + outage
        while second < back:  # made during the outage, delivered when it ends
            second += 1
            batch_at(T0 + second, T0 + back + 0.02)
        assert aggregator.skew.estimate("a1") is not None
    for _ in range(10):  # fresh again
        second += 1
        batch_at(T0 + second, T0 + second + 0.01)
    assert aggregator.take_alarms() == []
    assert abs(aggregator.skew.estimate("a1") or 0.0) < 0.1


def test_consecutive_failures_fire_once_per_run() -> None:
    aggregator = Aggregator(CONFIG)
    failures = [ping(T0 + 1 + i / 10, "timeout") for i in range(5)]
    aggregator.handle("pw.meas.web.r1", batch(1, failures[:2]), T0 + 1.2)
    assert aggregator.take_fast() == []
    aggregator.handle("pw.meas.web.r1", batch(2, failures[2:]), T0 + 1.5)
    fired = aggregator.take_fast()
    assert len(fired) == 1
    evidence = fired[0]
    assert (evidence.kind, evidence.protocol, evidence.traffic_class, evidence.count) == (
        "consecutive-failures",
        "icmp",
        "best-effort",
        3,
    )
    assert "127.0.0.1" in evidence.detail and evidence.route == "r1"
    # a success resets the run; three more failures fire again
    aggregator.handle("pw.meas.web.r1", batch(3, [ping(T0 + 2)]), T0 + 2)
    again = [ping(T0 + 2.1 + i / 10, "send-failed") for i in range(3)]
    aggregator.handle("pw.meas.web.r1", batch(4, again), T0 + 2.5)
    assert len(aggregator.take_fast()) == 1


def test_consecutive_failures_zero_turns_the_fast_path_off() -> None:
    aggregator = Aggregator(CONFIG)
    failures = [ping(T0 + 1 + i / 10, "timeout") for i in range(10)]
    aggregator.handle("pw.meas.web.r10", batch(1, failures, route="r10"), T0 + 2)
    assert aggregator.take_fast() == []
