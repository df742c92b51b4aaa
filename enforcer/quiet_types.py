"""Quiet windows recognised while decoding: one msgspec type per lane layout.

A quiet layout (see `enforcer.route_tracker`) lists, per position of a
route's window, the lane's identity and the limits it is judged against.
`quiet_decoder` turns it into a `WindowStats` subclass whose `lanes` is a
fixed-length tuple of `LaneStats` subclasses, one per position: the identity
fields become `Literal`s and each rule's limit a constraint derived from the
rule (`enforcer.rules.constraints`) on top of the wire contract's own ones.
Decoding a window with it succeeds only when the window has exactly that
layout and no rule fails a figure, and the check runs inside msgspec's
decoder instead of as Python code per lane.

It refuses a little more than the per-lane check accepts (an aggregate lane
with fewer than `min-samples` measurements, a field left out of the JSON):
such a window is then decoded and judged the ordinary way. The decoded
objects are `WindowStats` / `LaneStats` instances and encode to the same JSON.
"""

from typing import Any, Literal

import msgspec

from enforcer.rules import (
    REACHABILITY_RULES,
    SLA_RULES,
    Limits,
    Rule,
    constraints,
    samples_constraint,
)
from schemas.wire import Lane, LaneStats, WindowStats

#: What a position of a layout is checked against: nothing (shown only), the
#: reachability rules or the SLA rules (`enforcer.rules`).
SHOWN, REACHABILITY, SLA = 0, 1, 2
RULES_OF_KIND: dict[int, tuple[Rule, ...]] = {REACHABILITY: REACHABILITY_RULES, SLA: SLA_RULES}

#: One lane position: the lane, what it is checked against, and the limits of those
#: rules (in the rules' order; empty when shown only).
LayoutSlot = tuple[Lane, int, Limits]

QuietDecoder = msgspec.json.Decoder[WindowStats]

#: LaneStats's own defaults of the identity fields that have one.
_IDENTITY_DEFAULTS = {"source": "probe", "destination": "", "probe": ""}

_LANE_TYPES: dict[tuple[LayoutSlot, int], type[LaneStats]] = {}
_LANE_TYPES_MAX = 4096


def _identity(name: str, value: str) -> tuple[Any, ...]:
    """A field that must hold `value`; left out, it may only mean LaneStats's default."""
    if name in _IDENTITY_DEFAULTS and _IDENTITY_DEFAULTS[name] == value:
        return (name, Literal[value], value)
    return (name, Literal[value])


def _lane_type(slot: LayoutSlot, min_samples: int) -> type[LaneStats]:
    """The LaneStats subclass a lane at this position must decode as."""
    cached = _LANE_TYPES.get((slot, min_samples))
    if cached is not None:
        return cached
    lane, kind, limits = slot
    fields: list[Any] = [
        _identity(name, value) for name, value in zip(Lane._fields, lane, strict=True)
    ]
    if kind != SHOWN:
        fields.append(samples_constraint(min_samples))
        fields.extend(constraints(RULES_OF_KIND[kind], limits))
    lane_type: type[LaneStats] = msgspec.defstruct(  # type: ignore[assignment]
        "QuietLane", fields, bases=(LaneStats,), frozen=True, kw_only=True, gc=False
    )
    if len(_LANE_TYPES) >= _LANE_TYPES_MAX:
        _LANE_TYPES.clear()
    _LANE_TYPES[(slot, min_samples)] = lane_type
    return lane_type


def quiet_decoder(slots: tuple[LayoutSlot, ...], min_samples: int) -> QuietDecoder:
    """A decoder that accepts exactly the quiet windows of this layout (see module doc)."""
    lane_types = tuple(_lane_type(slot, min_samples) for slot in slots)
    lanes_type: Any = tuple[lane_types] if lane_types else tuple[()]  # type: ignore[valid-type]
    window_type = msgspec.defstruct(
        "QuietWindow",
        [("lanes", lanes_type)],
        bases=(WindowStats,),
        frozen=True,
        kw_only=True,
        gc=False,
    )
    return msgspec.json.Decoder(window_type)
