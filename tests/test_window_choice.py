"""`enforcer.window_choice`: one window per (route, window start) of the copies the
aggregator replicas publish (the rule itself; tests/test_aggregator_replicas.py runs
it with real replicas and a real enforcer)."""

from __future__ import annotations

from collections import Counter

from enforcer.window_choice import WindowChoice
from schemas.codec import encode
from schemas.wire import LaneStats, PathState, WindowStats

ROUTE = ("web", "r1")


def window(start: float, replica: str, since: float, count: int = 10) -> bytes:
    lane = LaneStats(
        protocol="icmp", traffic_class="best-effort", count=count, errors=0, error_pct=0.0
    )
    return encode(
        WindowStats(
            service="web",
            route="r1",
            window_start=start,
            window_end=start + 1,
            lanes=[lane],
            replica=replica,
            receiving_since=since,
        )
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def choice(clock: Clock | None = None) -> tuple[WindowChoice, Counter[str]]:
    dropped: Counter[str] = Counter()
    return WindowChoice([ROUTE], dropped, hold_s=1.0, clock=clock or Clock()), dropped


def test_the_first_complete_copy_is_taken_and_the_others_dropped() -> None:
    chosen, dropped = choice()
    a, b = window(100, "a", since=50), window(100, "b", since=60)
    assert chosen.offer(*ROUTE, a) == [a]
    assert chosen.offer(*ROUTE, b) == []
    assert chosen.duplicates == 1 and not dropped
    state = chosen.stamp(PathState(service="web", route="r1"))
    assert state.window_replica == "a"
    # the next window may come from the other replica first: no flapping of content
    c = window(101, "b", since=60)
    assert chosen.offer(*ROUTE, c) == [c]
    assert chosen.stamp(state).window_replica == "b"


def test_a_partial_copy_waits_for_a_complete_one_and_loses_to_it() -> None:
    clock = Clock()
    chosen, _ = choice(clock)
    restarted = window(100, "a", since=100.4, count=6)  # subscribed 0.4 s into the window
    complete = window(100, "b", since=20)
    assert chosen.offer(*ROUTE, restarted) == []
    clock.now = 0.5
    assert chosen.due() == []
    assert chosen.offer(*ROUTE, complete) == [complete]
    clock.now = 5.0
    assert chosen.due() == []  # the partial one was dropped, not judged later


def test_without_a_complete_copy_the_most_complete_partial_one_is_taken_once() -> None:
    clock = Clock()
    chosen, _ = choice(clock)
    later = window(100, "a", since=100.7, count=3)
    earlier = window(100, "b", since=100.2, count=8)
    assert chosen.offer(*ROUTE, later) == []
    assert chosen.offer(*ROUTE, earlier) == []
    clock.now = 0.9
    assert chosen.due() == []
    clock.now = 1.0  # the hold started with the first copy
    assert chosen.due() == [("web", "r1", earlier)]
    assert chosen.due() == []
    assert chosen.offer(*ROUTE, window(100, "c", since=10)) == []  # too late: taken


def test_a_held_partial_window_goes_first_when_the_next_window_arrives() -> None:
    chosen, _ = choice()
    partial = window(100, "a", since=100.5)
    following = window(101, "a", since=100.5)  # complete: a has received since 100.5
    assert chosen.offer(*ROUTE, partial) == []
    assert chosen.offer(*ROUTE, following) == [partial, following]


def test_old_windows_are_dropped_and_unknown_or_malformed_ones_passed_on() -> None:
    chosen, dropped = choice()
    assert chosen.offer(*ROUTE, window(100, "a", since=0)) != []
    assert chosen.offer(*ROUTE, window(99, "b", since=0)) == []
    assert dropped == Counter({"stats:stale": 1})
    assert chosen.offer("web", "r2", b"{}") == [b"{}"]  # the engine counts what is wrong
    assert chosen.offer(*ROUTE, b"not json") == [b"not json"]
    assert chosen.offer("web", "r1", window(102, "a", since=0).replace(b'"r1"', b'"r9"')) == []
    assert dropped["stats:subject"] == 1
