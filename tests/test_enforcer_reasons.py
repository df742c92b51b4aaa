"""Reasons name every failing test with its numbers, once, and follow the evidence:
a route taken down by fast evidence whose windows then fail shows both, and its
alarm is updated (same id, new reason) when the reason changes."""

from pathlib import Path

import msgspec

from enforcer.engine import Outputs
from enforcer.reasons import Explanation, consecutive_failures_reason, join_once
from enforcer.store import EnforcerStore
from schemas.codec import encode
from schemas.limits import ALARM_UPDATE_MIN_INTERVAL_S
from schemas.wire import Alarm, FastEvidence, PathEvent, RouteCommand
from tests.test_enforcer_engine import engine, messages, tcp, window

REFUSED = "3 consecutive failures (refused) on tcp/high probe probe=- destination=-"


def refused(ts: float, count: int = 3) -> FastEvidence:
    return FastEvidence(
        service="web",
        route="r1",
        ts=ts,
        kind="consecutive-failures",
        protocol="tcp",
        traffic_class="high",
        source="probe",
        count=count,
        detail=REFUSED.replace("3", str(count), 1),
    )


def alarms(out: Outputs) -> list[Alarm]:
    return messages(out, Alarm)


def test_the_run_is_said_once_with_its_outcome() -> None:
    assert consecutive_failures_reason(refused(1.0)) == "tcp/high 3 consecutive failures (refused)"
    other = FastEvidence(
        service="web",
        route="r1",
        ts=1.0,
        kind="consecutive-failures",
        count=4,
        detail="agent saw resets",
        destination="127.0.0.9",
    )
    assert (
        consecutive_failures_reason(other)
        == "any/any 4 consecutive failures (agent saw resets) to 127.0.0.9"
    )


def test_an_explanation_joins_its_parts_once() -> None:
    why = Explanation(("a > 1", "b > 2", "a > 1"), "c")
    assert why.text() == "a > 1; b > 2; c"
    assert join_once(["", "x", "x", "y"]) == "x; y"
    why.clear()
    assert why.text() == ""


def test_fast_evidence_then_failing_windows_name_every_test_and_update_the_alarm() -> None:
    eng, clock = engine()
    eng.on_window(window("web", "r1", 10_000, tcp(0)))
    out = eng.on_fast(refused(10_001.0))
    [raised] = alarms(out)
    [down] = [p for p in out.paths if p.route == "r1"]
    assert down.state == "down"
    assert raised.reason == down.reason == "tcp/high 3 consecutive failures (refused)"
    # the window then fails the error threshold: both tests, with their numbers
    clock.now += 5
    out = eng.on_window(window("web", "r1", 10_005, tcp(100)))
    [update] = alarms(out)
    both = "tcp/high error 100 % > 50 %; tcp/high 3 consecutive failures (refused)"
    assert (update.id, update.status, update.reason) == (raised.id, "raised", both)
    assert update.updated_at == 10_005
    assert [p.reason for p in out.paths if p.route == "r1"] == [both]
    assert messages(out, PathEvent) == [] and messages(out, RouteCommand) == []
    # new figures, new reason; the same figures (as JSON, the quiet decoder's way) none
    clock.now += 5
    out = eng.on_window(window("web", "r1", 10_010, tcp(70)))
    [update] = alarms(out)
    assert update.reason.startswith("tcp/high error 70 % > 50 %;")
    again = window("web", "r1", 10_015, tcp(70))
    assert alarms(eng.on_window_payload("web", "r1", encode(again))) == []
    # a longer run of failures replaces the fast part; a passing window changes nothing
    clock.now += 5
    out = eng.on_fast(refused(10_016.0, count=5))
    [update] = alarms(out)
    assert update.reason == "tcp/high error 70 % > 50 %; tcp/high 5 consecutive failures (refused)"
    assert alarms(eng.on_window(window("web", "r1", 10_020, tcp(0)))) == []
    [state] = [p for p in eng.path_states() if p.route == "r1"]
    assert state.reason == update.reason
    assert "consecutive failures (" not in state.reason.split("(refused)")[0]


def test_evidence_that_keeps_changing_updates_the_alarm_at_most_every_interval() -> None:
    """A flood of fast evidence, each with a new run length: KV follows every one, the
    alarm is updated at most every ALARM_UPDATE_MIN_INTERVAL_S of the enforcer's clock."""
    eng, clock = engine()
    eng.on_window(window("web", "r1", 10_000, tcp(0)))
    [raised] = alarms(eng.on_fast(refused(10_001.0)))
    updates: list[Alarm] = []
    last_reason = ""
    for n in range(200):
        out = eng.on_fast(refused(10_001.0 + n, count=4 + n))
        updates.extend(alarms(out))
        last_reason = [p.reason for p in out.paths if p.route == "r1"][-1]
        clock.now += ALARM_UPDATE_MIN_INTERVAL_S / 10
    assert last_reason.endswith(f"{4 + 199} consecutive failures (refused)")
    # 200 reasons over 20 intervals: one update per interval, the first at once
    assert 19 <= len(updates) <= 21, len(updates)
    assert {u.id for u in updates} == {raised.id}


async def test_the_store_keeps_the_updated_reason_of_a_raised_alarm(tmp_path: Path) -> None:
    store = await EnforcerStore.open(tmp_path / "enforcer.db")
    try:
        first = Alarm(id="web.r1.tcp.high.reachability@1", status="raised", reason="a", raised_at=1)
        assert await store.record_alarm(first)
        await store.update_alarm(msgspec.structs.replace(first, reason="a; b", updated_at=2.0))
        [active] = await store.active_alarms()
        assert (active.reason, active.updated_at) == ("a; b", 2.0)
        assert await store.has_alarm(first.id, "raised")
        assert not await store.has_alarm(first.id, "cleared")
    finally:
        await store.close()
