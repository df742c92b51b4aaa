"""The quiet-window shortcut of one route: windows that change nothing but figures.

After a fully judged window, `QuietShortcut.after_judged` notes what a later
window must look like to change no machine and no shown state: every machine
is either steady up or held down (`PathMachine.quiet_until`), and every lane
of the window is known and passes its rules' pre-check (or has too few
samples, for aggregate lanes); every probe address must pass and already be
shown up. While no machine changed since the note (the route's revision) and
no hold-down is over, such a window is taken as figures only: `accepts`
checks a decoded window lane by lane, and `decoder` gives a msgspec decoder
(`enforcer.quiet_types`) that makes the same check while decoding JSON.

The interface is small on purpose: `accepts`, `decoder`, `still_open`,
`after_judged`, `forget`. The full judgement is the reference; the shortcut
must decide exactly like it (tests/test_enforcer_quiet.py).
"""

import math
from dataclasses import dataclass, field

from enforcer.judge import Judge, RouteJudges
from enforcer.quiet_types import REACHABILITY, SHOWN, SLA, LayoutSlot, QuietDecoder, quiet_decoder
from enforcer.route_figures import RouteFigures, lane_key
from enforcer.route_machines import RouteMachines
from enforcer.route_spec import REACHABILITY_PROTOCOLS, RouteSpec
from enforcer.rules import enough_samples
from enforcer.state_machine import Clock, Revision
from schemas.wire import Lane, LaneStats

_FOREVER = math.inf
_UNSEEN = object()


@dataclass(slots=True)
class _Layout:
    """A window's lane layout, each position with the rules it is checked against;
    its decoders (by min-samples) are built when first asked for."""

    slots: tuple[LayoutSlot, ...]
    decoders: dict[int, QuietDecoder] = field(default_factory=dict)

    def decoder(self, min_samples: int) -> QuietDecoder:
        decoder = self.decoders.get(min_samples)
        if decoder is None:
            decoder = self.decoders[min_samples] = quiet_decoder(self.slots, min_samples)
        return decoder


#: Every distinct layout in use, shared by the routes that have it (bounded).
_SHARED_LAYOUTS: dict[tuple[LayoutSlot, ...], _Layout] = {}
_SHARED_LAYOUTS_MAX = 4096


@dataclass
class _Note:
    """What a window must look like to be quiet, noted after a judged window."""

    revision: int
    #: The earliest hold-down end of a down machine (inf when none is down).
    until: float
    #: Aggregate lanes: their judge, or None when shown only.
    lanes: dict[Lane, Judge | None]
    #: Probes with an SLA: their judge.
    probes: dict[str, Judge]
    #: Probe addresses shown up.
    probe_lanes_up: frozenset[Lane]
    #: The layout of the window it was noted after, for the decoder.
    layout: _Layout | None = None


def _layout(lanes: list[LaneStats], note: _Note, previous: _Layout | None = None) -> _Layout | None:
    """The layout of a window that would pass `accepts`, None when it could not;
    `previous` (the route's last layout) when it is the same."""
    slots: list[LayoutSlot] = []
    for lane in lanes:
        key = lane_key(lane)
        if lane.probe:
            sla = note.probes.get(lane.probe)
            if sla is None or key not in note.probe_lanes_up:
                return None
            slots.append((key, SLA, sla.limits))
            continue
        found = note.lanes.get(key, _UNSEEN) if not lane.destination else _UNSEEN
        if found is _UNSEEN:
            return None
        judge: Judge | None = found  # type: ignore[assignment]
        slots.append((key, SHOWN, ()) if judge is None else (key, REACHABILITY, judge.limits))
    layout_slots = tuple(slots)
    if previous is not None and previous.slots == layout_slots:
        return previous
    # routes of one config mostly share layouts: one object each, warm in the cache
    shared = _SHARED_LAYOUTS.get(layout_slots)
    if shared is None:
        if len(_SHARED_LAYOUTS) >= _SHARED_LAYOUTS_MAX:
            _SHARED_LAYOUTS.clear()  # layouts churn (lanes come and go): start over
        shared = _SHARED_LAYOUTS[layout_slots] = _Layout(layout_slots)
    return shared


class QuietShortcut:
    """Whether a route's next window may be taken as figures only (see the module doc)."""

    def __init__(
        self,
        spec: RouteSpec,
        clock: Clock,
        revision: Revision,
        machines: RouteMachines,
        figures: RouteFigures,
        judges: RouteJudges,
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.revision = revision
        self.machines = machines
        self.figures = figures
        self.judges = judges
        self._note: _Note | None = None
        #: A judged window's lanes and the revision after it, to note from later.
        self._later: tuple[list[LaneStats], int] | None = None
        self._last_layout: _Layout | None = None

    def forget(self) -> None:
        self._note = None
        self._later = None

    def after_judged(self, lanes: list[LaneStats], went_down: bool) -> None:
        """A window was judged in full: note what the next quiet ones look like. A route
        just taken down is noted when its next window comes, so the close where many
        routes fail at once pays for their outputs but not for this."""
        if went_down:
            self._note = None
            self._later = (lanes, self.revision.value)
        else:
            self._note = self._noted(lanes)

    def still_open(self, end: float) -> "_Note | None":
        """The note if it still holds for a window ending at `end` (no machine changed
        since, no hold-down over by then or by now); else None."""
        later = self._later
        if later is not None:
            self._later = None
            if later[1] == self.revision.value:
                self._note = self._noted(later[0])
        note = self._note
        if note is None or note.revision != self.revision.value:
            return None
        if note.until != _FOREVER and max(end, self.clock()) >= note.until:
            return None
        return note

    def decoder(self) -> QuietDecoder | None:
        """A decoder that accepts the next window only if it is quiet; None when the next
        window must be judged anyway."""
        note = self.still_open(-math.inf)
        if note is None or note.layout is None:
            return None
        return note.layout.decoder(self.spec.min_samples)

    def accepts(self, lanes: list[LaneStats], end: float) -> bool:
        """Whether a window of these lanes ending at `end` changes nothing but figures."""
        note = self.still_open(end)
        if note is None:
            return False
        min_samples = self.spec.min_samples
        for lane in lanes:
            if lane.probe:
                sla = note.probes.get(lane.probe)
                if (
                    sla is None
                    or not enough_samples(lane, min_samples)
                    or sla.check(lane)
                    or lane_key(lane) not in note.probe_lanes_up
                ):
                    return False
                continue
            if lane.destination:
                return False
            judge = note.lanes.get(lane_key(lane), _UNSEEN)
            if judge is _UNSEEN:
                return False
            if judge is not None and enough_samples(lane, min_samples) and judge.check(lane):  # type: ignore[attr-defined]
                return False
        return True

    def _noted(self, window_lanes: list[LaneStats]) -> _Note | None:
        """What the next windows must look like to be quiet; None when none can be."""
        spec, machines, figures = self.spec, self.machines, self.figures
        if (
            machines.evidence
            or machines.plugins
            or figures.destination_lanes
            or not spec.enabled
            or spec.probe_type == "disabled"
        ):
            return None
        until = _FOREVER
        lanes: dict[Lane, Judge | None] = {}
        for key in figures.lane_metrics:
            tracked = machines.lanes.get(key)
            if tracked is None:
                if key.protocol in REACHABILITY_PROTOCOLS:
                    return None
                lanes[key] = None  # shown, never judged
                continue
            held = tracked.machine.quiet_until()
            if held is None:
                return None
            # a lane held down is checked too: a failing window may change its reason
            lanes[key] = self.judges.reachability(key.protocol, key.traffic_class)
            until = min(until, held)
        probes: dict[str, Judge] = {}
        for name, tracked in machines.probes.items():
            judge = self.judges.sla(name)
            held = tracked.machine.quiet_until()
            if judge is None or held is None:
                return None
            until = min(until, held)
            probes[name] = judge
        probe_lanes_up = frozenset(
            key for key, shown in figures.probe_lanes.items() if shown.state == "up"
        )
        note = _Note(self.revision.value, until, lanes, probes, probe_lanes_up)
        note.layout = self._last_layout = _layout(window_lanes, note, self._last_layout)
        return note
