"""Session tracker: conntrack events in, one outcome per session out.

Pure and clock-injected: every call takes `now` (monotonic seconds, for
durations and expiry) and `wall` (Unix seconds, for the measurement time),
so it is tested without netlink. A session is keyed by its conntrack id and
is tracked from its NEW event until its outcome is known, then forgotten
(later events of that id are ignored):

* TCP: `ok` when an UPDATE shows an established state (ESTABLISHED or later,
  with a reply seen); the time-to-establishment is from the NEW event (first
  SYN) to that UPDATE (handshake ACK). Both ends are the kernel's event
  times when the events carry them (`CtEvent.kernel_ns`, counted as
  `timed_by_kernel`), else the moments the events were read
  (`timed_on_receipt`). A session that reaches CLOSE, or is destroyed in CLOSE,
  before that is `close-before-establishment` (RST or FIN); one destroyed
  while still in SYN_SENT / SYN_RECV (the kernel expired it) or still pending
  after `tcp_timeout` is `timeout-before-establishment`.
* UDP: `ok` at the first UPDATE with SEEN_REPLY (latency = first reply time,
  timed the same way);
  destroyed without a reply, or still unanswered after `udp_timeout`, is
  `timeout-before-establishment`.
* an ICMP destination-unreachable error quoting a pending flow makes it
  `unreachable` at once (TCP and UDP).

The classifier is called at NEW; flows it does not place (None) are not
tracked. At most `max_sessions` are pending; beyond that the oldest is
dropped and counted (`evicted`), never reported as a failure. `forget_pending`
drops every pending session after lost events (an overrun), so a gap in
the event stream never turns into false timeouts.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from agents.passive.events import (
    IPS_ASSURED,
    IPS_SEEN_REPLY,
    TCP_CLOSE,
    TCP_CLOSE_WAIT,
    TCP_ESTABLISHED,
    TCP_FIN_WAIT,
    TCP_LAST_ACK,
    TCP_SYN_SENT,
    TCP_TIME_WAIT,
    CtEvent,
)
from schemas.wire import Outcome, TrafficClass

#: (IP protocol number, source, destination, source port, destination port)
FlowKey = tuple[int, str, str, int, int]

_ESTABLISHED_STATES = frozenset(
    {TCP_ESTABLISHED, TCP_FIN_WAIT, TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_TIME_WAIT}
)
_PROTOCOL_NAMES = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp"}


@dataclass(frozen=True, slots=True)
class FlowLabel:
    """Where a flow belongs, as far as the event alone tells: service, class, destination."""

    service: str
    traffic_class: TrafficClass
    destination: str


@dataclass(slots=True)
class Session:
    """A session whose outcome is not known yet."""

    ct_id: int
    flow: FlowKey
    label: FlowLabel
    started: float
    #: the kernel's time of the NEW event (Unix ns), 0 when it gave none
    kernel_started: int = 0


@dataclass(frozen=True, slots=True)
class SessionOutcome:
    """What one session came to; the route is resolved later from (source, destination)."""

    label: FlowLabel
    protocol: str
    source: str
    destination: str
    outcome: Outcome
    latency_ms: float | None
    ts: float


Classify = Callable[[CtEvent], FlowLabel | None]


class SessionTracker:
    """Turns conntrack events into `SessionOutcome`s; see the module docstring."""

    def __init__(
        self,
        classify: Classify,
        *,
        tcp_timeout: float = 30.0,
        udp_timeout: float = 30.0,
        max_sessions: int = 200_000,
        protocols: tuple[str, ...] = ("tcp", "udp"),
    ) -> None:
        self.classify = classify
        self.timeouts = {socket.IPPROTO_TCP: tcp_timeout, socket.IPPROTO_UDP: udp_timeout}
        self.max_sessions = max_sessions
        self.protocols = {
            number for number, name in _PROTOCOL_NAMES.items() if name in set(protocols)
        }
        #: pending sessions by conntrack id, oldest first (insertion order)
        self.pending: dict[int, Session] = {}
        self.by_flow: dict[FlowKey, int] = {}
        self.counters: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self.pending)

    # --- events ---------------------------------------------------------------

    def on_event(self, event: CtEvent, now: float, wall: float) -> SessionOutcome | None:
        """Feed one event; returns the session's outcome when this event settles it."""
        if event.kind == "new":
            self._start(event, now)
            return None
        session = self.pending.get(event.ct_id)
        if session is None:
            return None
        if session.flow[0] == socket.IPPROTO_TCP:
            return self._tcp(session, event, now, wall)
        return self._udp(session, event, now, wall)

    def _start(self, event: CtEvent, now: float) -> None:
        if event.protocol not in self.protocols:
            return
        if event.protocol == socket.IPPROTO_TCP and event.tcp_state != TCP_SYN_SENT:
            self.counters["picked_up"] += 1
            return
        label = self.classify(event)
        if label is None:
            self.counters["unclassified"] += 1
            return
        if len(self.pending) >= self.max_sessions:
            oldest = next(iter(self.pending))
            self._forget(oldest)
            self.counters["evicted"] += 1
        flow: FlowKey = (
            event.protocol,
            event.source,
            event.destination,
            event.source_port,
            event.destination_port,
        )
        self.pending[event.ct_id] = Session(event.ct_id, flow, label, now, event.kernel_ns)
        self.by_flow[flow] = event.ct_id
        self.counters["sessions"] += 1

    def _tcp(
        self, session: Session, event: CtEvent, now: float, wall: float
    ) -> SessionOutcome | None:
        state = event.tcp_state
        replied = bool(event.status & (IPS_SEEN_REPLY | IPS_ASSURED))
        if state in _ESTABLISHED_STATES and replied:
            return self._settle(session, "ok", now, wall, timed_by=event)
        if event.kind == "destroy":
            if event.status & IPS_ASSURED:
                return self._settle(session, "ok", now, wall)
            if state == TCP_CLOSE:
                return self._settle(session, "close-before-establishment", now, wall)
            return self._settle(session, "timeout-before-establishment", now, wall)
        if state == TCP_CLOSE:
            return self._settle(session, "close-before-establishment", now, wall)
        return None

    def _udp(
        self, session: Session, event: CtEvent, now: float, wall: float
    ) -> SessionOutcome | None:
        if event.status & IPS_SEEN_REPLY:
            timed_by = event if event.kind != "destroy" else None
            return self._settle(session, "ok", now, wall, timed_by=timed_by)
        if event.kind == "destroy":
            return self._settle(session, "timeout-before-establishment", now, wall)
        return None

    def on_icmp_error(self, flow: FlowKey, now: float, wall: float) -> SessionOutcome | None:
        """An ICMP destination-unreachable error quoting `flow` (as the sender sent it)."""
        ct_id = self.by_flow.get(flow)
        if ct_id is None:
            return None
        session = self.pending.get(ct_id)
        if session is None:
            return None
        return self._settle(session, "unreachable", now, wall)

    # --- time and gaps ----------------------------------------------------------

    def expire(self, now: float, wall: float) -> list[SessionOutcome]:
        """Sessions pending longer than their protocol's timeout: timeout-before-establishment."""
        expired: list[SessionOutcome] = []
        shortest = min(self.timeouts.values())
        for session in list(self.pending.values()):
            age = now - session.started
            if age < shortest:
                break  # insertion order is start order: the rest are younger
            if age >= self.timeouts[session.flow[0]]:
                expired.append(self._settle(session, "timeout-before-establishment", now, wall))
        return expired

    def forget_pending(self) -> int:
        """Drop every pending session (events were lost); returns how many."""
        count = len(self.pending)
        self.pending.clear()
        self.by_flow.clear()
        self.counters["forgotten_after_gap"] += count
        return count

    # --- internals ----------------------------------------------------------------

    def _forget(self, ct_id: int) -> None:
        session = self.pending.pop(ct_id, None)
        if session is not None and self.by_flow.get(session.flow) == ct_id:
            del self.by_flow[session.flow]

    def _settle(
        self,
        session: Session,
        outcome: Outcome,
        now: float,
        wall: float,
        *,
        timed_by: CtEvent | None = None,
    ) -> SessionOutcome:
        """Forget the session and say what it came to; `timed_by` is the event that
        established it (the session then has a latency)."""
        self._forget(session.ct_id)
        self.counters["learned"] += 1
        self.counters["ok" if outcome == "ok" else "errors"] += 1
        latency_ms: float | None = None
        if timed_by is not None:
            if session.kernel_started and timed_by.kernel_ns:
                self.counters["timed_by_kernel"] += 1
                latency_ms = max(timed_by.kernel_ns - session.kernel_started, 0) / 1e6
            else:
                self.counters["timed_on_receipt"] += 1
                latency_ms = max(now - session.started, 0.0) * 1000.0
        flow = session.flow
        return SessionOutcome(
            label=session.label,
            protocol=_PROTOCOL_NAMES[flow[0]],
            source=flow[1],
            destination=flow[2],
            outcome=outcome,
            latency_ms=latency_ms,
            ts=wall,
        )
