"""What the enforcer publishes, as messages with deterministic ids: the alarm of
a machine (raised, updated, cleared), and the events and commands a route's new
PathState calls for (path-down / up / probation, best-effort, stale / fresh;
withdraw or restore on the router, reselect for the healers)."""

from dataclasses import dataclass, field
from typing import Literal

import msgspec

from enforcer import ids
from enforcer.route_machines import AlarmNotice, Tracked
from enforcer.route_spec import RouteSpec
from schemas import subjects
from schemas.wire import (
    Alarm,
    HealCommand,
    PathEvent,
    PathEventKind,
    PathState,
    PathStateName,
    RouteCommand,
)

_EVENT_OF_STATE: dict[str, PathEventKind] = {
    "down": "path-down",
    "up": "path-up",
    "probation": "probation",
}


@dataclass(frozen=True)
class Publication:
    """One JetStream message: subject, `Nats-Msg-Id`, payload."""

    subject: str
    msg_id: str
    message: msgspec.Struct
    #: an alarm update: the raised alarm again with a new reason (`alarm_publication`)
    update: bool = False


@dataclass
class Outputs:
    """What one input produced."""

    paths: list[PathState] = field(default_factory=list)
    publications: list[Publication] = field(default_factory=list)
    expired_probe_keys: list[str] = field(default_factory=list)
    #: keys of routes no longer configured, whose PathState goes from KV
    deleted_paths: list[str] = field(default_factory=list)

    def extend(self, other: "Outputs") -> None:
        self.paths.extend(other.paths)
        self.publications.extend(other.publications)
        self.expired_probe_keys.extend(other.expired_probe_keys)
        self.deleted_paths.extend(other.deleted_paths)


def alarm_publication(spec: RouteSpec, tracked: Tracked, notice: AlarmNotice) -> Publication:
    """The alarm of one machine of a route, raised, updated or cleared.

    An update is the raised alarm again (same id) with its new reason, under its own
    `Nats-Msg-Id` (made from the update's evidence time) and `updated_at` set."""
    alarm_id = ids.alarm_id(
        spec.service,
        spec.route,
        tracked.protocol,
        tracked.traffic_class,
        tracked.cause,
        notice.raised_at,
    )
    status: Literal["raised", "cleared"] = "cleared" if notice.status == "cleared" else "raised"
    updated = notice.status == "updated"
    alarm = Alarm(
        id=alarm_id,
        status=status,
        severity="major" if spec.enforcement else "minor",
        service=spec.service,
        route=spec.route,
        protocol=tracked.protocol,
        traffic_class=tracked.traffic_class,
        cause=tracked.cause,
        reason=notice.reason,
        raised_at=notice.raised_at,
        cleared_at=notice.cleared_at,
        updated_at=notice.at if updated else None,
    )
    if updated:
        msg_id = ids.alarm_update_msg_id(alarm_id, notice.at)
    else:
        msg_id = ids.msg_id(alarm_id, status)
    return Publication(subjects.alarm(spec.service, spec.route), msg_id, alarm, update=updated)


def route_messages(
    spec: RouteSpec, previous: PathState | None, state: PathState, at: float
) -> list[Publication]:
    """The events and commands of a route whose PathState went from `previous` to
    `state` at `at`."""
    previous_state: PathStateName = previous.state if previous else "unknown"
    publications = [
        _event(spec, kind, reason, previous_state, state, at)
        for kind, reason in _event_kinds(spec, previous, state)
    ]
    was_in_service = previous.in_service if previous else True
    if spec.enforcement and was_in_service != state.in_service:
        publications.extend(_commands(spec, state, at))
    return publications


def _event_kinds(
    spec: RouteSpec, previous: PathState | None, state: PathState
) -> list[tuple[PathEventKind, str]]:
    events: list[tuple[PathEventKind, str]] = []
    previous_state = previous.state if previous else "unknown"
    if previous_state != state.state and state.state in _EVENT_OF_STATE:
        events.append((_EVENT_OF_STATE[state.state], state.reason))
    if state.best_effort and not (previous and previous.best_effort):
        events.append(("best-effort", f"every route of {spec.service} is down; kept in service"))
    if previous is not None and previous.stale != state.stale:
        stale = state.stale
        events.append(("stale" if stale else "fresh", "no fresh data" if stale else "data again"))
    return events


def _event(
    spec: RouteSpec,
    kind: PathEventKind,
    reason: str,
    previous_state: PathStateName,
    state: PathState,
    at: float,
) -> Publication:
    event_id = ids.event_id(spec.service, spec.route, kind, at)
    event = PathEvent(
        id=event_id,
        service=spec.service,
        route=spec.route,
        kind=kind,
        ts=at,
        state=state.state,
        previous=previous_state,
        reason=reason,
        in_service=state.in_service,
        hold_down_until=state.hold_down_until,
    )
    return Publication(subjects.event(spec.service, spec.route), event_id, event)


def _commands(spec: RouteSpec, state: PathState, at: float) -> list[Publication]:
    """Withdraw (and reselect for the healers) or restore the route's next hop."""
    action: Literal["withdraw", "restore"] = "restore" if state.in_service else "withdraw"
    command_id = ids.command_id(spec.service, spec.route, action, at)
    command = RouteCommand(
        id=command_id,
        action=action,
        node=spec.node,
        service=spec.service,
        route=spec.route,
        prefixes=list(spec.prefixes),
        interface=spec.interface,
        gateway=spec.gateway,
        cost=spec.cost,
        best_effort=state.best_effort,
        reason=state.reason,
        ts=at,
    )
    publications = [Publication(subjects.cmd_route(spec.node), command_id, command)]
    if action == "withdraw":
        heal_id = ids.command_id(spec.service, spec.route, "reselect", at)
        heal = HealCommand(
            id=heal_id, service=spec.service, route=spec.route, reason=state.reason, ts=at
        )
        publications.append(Publication(subjects.cmd_heal(spec.service, spec.route), heal_id, heal))
    return publications
