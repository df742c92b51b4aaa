"""Quiet windows recognised while decoding: one msgspec type per lane layout.

A quiet layout (see `enforcer.route_tracker`) lists, per position of a
route's window, the lane's identity and the limits it is judged against.
`quiet_decoder` turns it into a `WindowStats` subclass whose `lanes` is a
fixed-length tuple of `LaneStats` subclasses, one per position: the identity
fields become `Literal`s and each limit a constraint (`Meta(le=...)`) on top of
the wire contract's own ones. Decoding a window with it succeeds only when
the window has exactly that layout and no figure passes a limit, and the
check runs inside msgspec's decoder instead of as Python code per lane.

It refuses a little more than the per-lane check accepts (an aggregate lane
with fewer than `min-samples` measurements, a field left out of the JSON):
such a window is then decoded and judged the ordinary way. The decoded
objects are `WindowStats` / `LaneStats` instances and encode to the same JSON.
"""

import math
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from schemas.wire import LaneStats, WindowStats

#: What a position of a layout is checked against (same codes as the layout's slots).
SHOWN, REACHABILITY, SLA = 0, 1, 2

#: One lane position: (protocol, traffic class, source, probe, destination, kind,
#: then the limits: error % / TTE max / TTE mean / -, or loss % / max / mean / jitter).
LayoutSlot = tuple[str, str, str, str, str, int, float, float, float, float]

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


def _at_most(limit: float, optional: bool, *, percent: bool = False) -> Any:
    """A float no greater than `limit` (and a percentage's own 0..100), or None when optional."""
    if percent:
        number: Any = Annotated[float, Meta(ge=0, le=min(limit, 100.0))]
    else:
        number = Annotated[float, Meta(le=limit)]
    return number | None if optional else number


def _lane_type(slot: LayoutSlot, min_samples: int) -> type[LaneStats]:
    """The LaneStats subclass a lane at this position must decode as."""
    cached = _LANE_TYPES.get((slot, min_samples))
    if cached is not None:
        return cached
    protocol, traffic_class, source, probe, destination, kind, a, b, c, d = slot
    fields: list[Any] = [
        _identity("protocol", protocol),
        _identity("traffic_class", traffic_class),
        _identity("source", source),
        _identity("destination", destination),
        _identity("probe", probe),
    ]
    if kind != SHOWN:
        # required, so that a count left out (0) is not taken as enough samples
        fields.append(("count", Annotated[int, Meta(ge=max(min_samples, 0))]))
        limited = [
            ("error_pct" if kind == REACHABILITY else "loss_pct", a, False, True),
            ("latency_max_ms", b, True, False),
            ("latency_mean_ms", c, True, False),
        ]
        if kind == SLA:
            limited.append(("jitter_ms", d, True, False))
        for name, limit, optional, percent in limited:
            if limit != math.inf:
                default = None if optional else 0.0
                fields.append((name, _at_most(limit, optional, percent=percent), default))
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
