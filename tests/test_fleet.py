"""Who is behind in `pathwatch show fleet` (`pathwatch.runtime.fleet.FleetBook`): against the latest
revision in KV, else against the config most members run; silent members and members
that do not say what they run are never behind."""

from __future__ import annotations

from pathwatch.runtime.fleet import FleetBook
from schemas.wire import AgentHeartbeat, ConfigMark, RoleStatus

NOW = 1_000_000.0


def book(max_members: int = 5) -> FleetBook:
    fleet = FleetBook(max_members)
    fleet.status(
        RoleStatus(
            role="enforcer", instance="a", ts=NOW, config=ConfigMark(digest="new", revision=9)
        ),
        NOW,
    )
    fleet.status(
        RoleStatus(
            role="router",
            instance="n1",
            ts=NOW,
            config=ConfigMark(digest="old", revision=8),
            dropped={"config:invalid": 1, "cmd:json": 3},
        ),
        NOW,
    )
    fleet.heartbeat(
        AgentHeartbeat(agent="n1", node="n1", version="1", config_hash="old", ts=NOW, interval_s=1),
        NOW - 10,  # silent: 10 s > 3 intervals of 1 s
    )
    fleet.status(RoleStatus(role="notifier", instance="x", ts=NOW), NOW)  # says nothing
    return fleet


def test_against_the_latest_revision_in_kv() -> None:
    report = book().report(ConfigMark(digest="new", revision=9), NOW)
    flags = {(m.role, m.instance): (m.behind, m.silent, m.refused) for m in report.members}
    assert report.reference_from == "kv"
    assert flags == {
        ("agent", "n1"): (False, True, 0),
        ("enforcer", "a"): (False, False, 0),
        ("notifier", "x"): (False, False, 0),
        ("router", "n1"): (True, False, 1),
    }


def test_without_kv_the_config_most_run_is_the_reference() -> None:
    fleet = book()
    fleet.status(RoleStatus(role="api", instance="a", ts=NOW, config=ConfigMark(digest="old")), NOW)
    report = fleet.report(None, NOW)
    assert report.reference_from == "majority" and report.reference == ConfigMark(digest="old")
    assert [m.role for m in report.members if m.behind] == ["enforcer"]


def test_the_member_heard_least_recently_goes_first() -> None:
    fleet = book(max_members=4)
    fleet.status(RoleStatus(role="api", instance="a", ts=NOW), NOW)
    assert {m.role for m in fleet.report(None, NOW).members} == {
        "agent",
        "api",
        "notifier",
        "router",
    }


def test_a_tie_has_no_reference() -> None:
    report = book().report(None, NOW)
    assert report.reference is None and report.reference_from == "none"
    assert not any(m.behind for m in report.members)
