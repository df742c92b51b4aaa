"""Encode an outgoing message so that it fits the server's max payload.

`fit(message, max_bytes)` returns the JSON of `message` when it fits, else of a
trimmed copy, trimmed step by step until it fits (docs/internals.md, "Bounds"):

* other messages (alarms, events, commands): `reason` cut to `limits.MAX_TEXT_CHARS`;
* WindowStats: per-destination and per-probe lanes dropped (the aggregate lane
  of each protocol, class and source stays), then the agent list;
* PathState: its reason cut to `limits.MAX_REASON_CHARS` and the reasons of its
  lanes and probes to `limits.MAX_TEXT_CHARS`, then lane metrics dropped, then
  per-destination and per-probe lanes, then every lane and probe (state,
  in-service and reason stay).

It returns None only when even the last step does not fit; the caller counts
that and sends nothing. Messages that fit cost one length check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from msgspec.structs import replace

from schemas.codec import encode
from schemas.limits import MAX_REASON_CHARS, MAX_TEXT_CHARS, clip
from schemas.wire import PathState, WindowStats

Step = Callable[[Any], Any]


def _clip_reason(message: Any) -> Any:
    reason = getattr(message, "reason", None)
    if isinstance(reason, str) and len(reason) > MAX_TEXT_CHARS:
        return replace(message, reason=clip(reason))
    return message


def _aggregate_lanes(window: WindowStats) -> WindowStats:
    return replace(
        window, lanes=[lane for lane in window.lanes if not (lane.destination or lane.probe)]
    )


def _few_agents(window: WindowStats) -> WindowStats:
    return replace(window, agents=window.agents[:16])


def _clip_state_text(state: PathState) -> PathState:
    return replace(
        state,
        reason=clip(state.reason, MAX_REASON_CHARS),
        lanes=[_clip_reason(lane) for lane in state.lanes],
        probes=[_clip_reason(probe) for probe in state.probes],
    )


def _no_lane_metrics(state: PathState) -> PathState:
    return replace(state, lanes=[replace(lane, metrics=None) for lane in state.lanes])


def _aggregate_state_lanes(state: PathState) -> PathState:
    return replace(
        state, lanes=[lane for lane in state.lanes if not (lane.destination or lane.probe)]
    )


def _bare_state(state: PathState) -> PathState:
    return replace(state, lanes=[], probes=[])


_STEPS: dict[type[Any], tuple[Step, ...]] = {
    WindowStats: (_aggregate_lanes, _few_agents),
    PathState: (_clip_state_text, _no_lane_metrics, _aggregate_state_lanes, _bare_state),
}


def fit(message: msgspec.Struct, max_bytes: int) -> tuple[bytes | None, bool]:
    """(JSON of `message` or of a trimmed copy that fits in `max_bytes`, whether it
    was trimmed); (None, True) when nothing fits."""
    data = encode(message)
    if len(data) <= max_bytes:
        return data, False
    for step in _STEPS.get(type(message), (_clip_reason,)):
        message = step(message)
        data = encode(message)
        if len(data) <= max_bytes:
            return data, True
    return None, True
