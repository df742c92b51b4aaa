"""Decode ctnetlink event messages (conntrack NEW / UPDATE / DESTROY) into `CtEvent`s.

pyroute2's generic netlink parser builds a full object tree per message,
which costs far more than the few fields a session needs; at tens of
thousands of events a second that is the bottleneck. `decode_events` reads
only those fields (original tuple, status, TCP state, mark, id) straight
from the buffer with `struct`. The layout is the one pyroute2's `nfct_msg`
describes, and `tests/test_passive_events.py` checks both decoders agree on
messages the kernel produced.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

EventKind = Literal["new", "update", "destroy"]

NFNL_SUBSYS_CTNETLINK: Final = 1
IPCTNL_MSG_CT_NEW: Final = 0
IPCTNL_MSG_CT_DELETE: Final = 2
NLM_F_CREATE: Final = 0x400
NLMSG_ERROR: Final = 2
NLMSG_OVERRUN: Final = 4

#: Multicast groups (bit masks for bind) of conntrack events.
GROUP_NEW: Final = 1
GROUP_UPDATE: Final = 2
GROUP_DESTROY: Final = 4

# attribute numbers (include/uapi/linux/netfilter/nfnetlink_conntrack.h)
CTA_TUPLE_ORIG: Final = 1
CTA_STATUS: Final = 3
CTA_PROTOINFO: Final = 4
CTA_MARK: Final = 8
CTA_ID: Final = 12
CTA_TUPLE_IP: Final = 1
CTA_TUPLE_PROTO: Final = 2
CTA_IP_V4_SRC: Final = 1
CTA_IP_V4_DST: Final = 2
CTA_IP_V6_SRC: Final = 3
CTA_IP_V6_DST: Final = 4
CTA_PROTO_NUM: Final = 1
CTA_PROTO_SRC_PORT: Final = 2
CTA_PROTO_DST_PORT: Final = 3
CTA_PROTOINFO_TCP: Final = 1
CTA_PROTOINFO_TCP_STATE: Final = 1

# status bits and TCP states (nf_conntrack_common.h, nf_conntrack_tcp.h)
IPS_SEEN_REPLY: Final = 1 << 1
IPS_ASSURED: Final = 1 << 2
TCP_SYN_SENT: Final = 1
TCP_SYN_RECV: Final = 2
TCP_ESTABLISHED: Final = 3
TCP_FIN_WAIT: Final = 4
TCP_CLOSE_WAIT: Final = 5
TCP_LAST_ACK: Final = 6
TCP_TIME_WAIT: Final = 7
TCP_CLOSE: Final = 8

_NLMSGHDR = struct.Struct("=IHHII")
_NLA = struct.Struct("=HH")
_BE16 = struct.Struct(">H")
_BE32 = struct.Struct(">I")
_NLA_TYPE_MASK = 0x3FFF


@dataclass(slots=True)
class CtEvent:
    """One conntrack event: what the session tracker needs of it."""

    kind: EventKind
    ct_id: int
    protocol: int
    source: str
    destination: str
    source_port: int
    destination_port: int
    status: int
    tcp_state: int | None
    mark: int


def _attrs(data: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    """Attribute number -> (payload start, payload end) of the attributes in [start, end)."""
    found: dict[int, tuple[int, int]] = {}
    offset = start
    while offset + 4 <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < 4:
            break
        found[kind & _NLA_TYPE_MASK] = (offset + 4, offset + length)
        offset += (length + 3) & ~3
    return found


def _tuple(data: bytes, start: int, end: int, family: int) -> tuple[int, str, str, int, int] | None:
    parts = _attrs(data, start, end)
    ip_span = parts.get(CTA_TUPLE_IP)
    proto_span = parts.get(CTA_TUPLE_PROTO)
    if ip_span is None or proto_span is None:
        return None
    ips = _attrs(data, *ip_span)
    if family == socket.AF_INET:
        src_span, dst_span = ips.get(CTA_IP_V4_SRC), ips.get(CTA_IP_V4_DST)
    else:
        src_span, dst_span = ips.get(CTA_IP_V6_SRC), ips.get(CTA_IP_V6_DST)
    if src_span is None or dst_span is None:
        return None
    source = socket.inet_ntop(family, data[src_span[0] : src_span[1]])
    destination = socket.inet_ntop(family, data[dst_span[0] : dst_span[1]])
    protos = _attrs(data, *proto_span)
    num_span = protos.get(CTA_PROTO_NUM)
    if num_span is None:
        return None
    protocol = data[num_span[0]]
    sport_span = protos.get(CTA_PROTO_SRC_PORT)
    dport_span = protos.get(CTA_PROTO_DST_PORT)
    sport = _BE16.unpack_from(data, sport_span[0])[0] if sport_span else 0
    dport = _BE16.unpack_from(data, dport_span[0])[0] if dport_span else 0
    return protocol, source, destination, sport, dport


def _tcp_state(data: bytes, start: int, end: int) -> int | None:
    tcp_span = _attrs(data, start, end).get(CTA_PROTOINFO_TCP)
    if tcp_span is None:
        return None
    state_span = _attrs(data, *tcp_span).get(CTA_PROTOINFO_TCP_STATE)
    return data[state_span[0]] if state_span is not None else None


#: Whether an UPDATE / DESTROY of this conntrack id is worth decoding (NEW always is).
Wanted = Callable[[int], bool]


def decode_message(
    data: bytes, offset: int, length: int, wanted: Wanted | None = None
) -> CtEvent | None:
    """The event in the netlink message at `offset`, or None when it is not one.

    With `wanted`, UPDATE and DESTROY events of ids it refuses are skipped
    after reading only the id (sessions already settled or never tracked).
    """
    _len, msg_type, flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
    if msg_type >> 8 != NFNL_SUBSYS_CTNETLINK:
        return None
    command = msg_type & 0xFF
    if command == IPCTNL_MSG_CT_DELETE:
        kind: EventKind = "destroy"
    elif command == IPCTNL_MSG_CT_NEW:
        kind = "new" if flags & NLM_F_CREATE else "update"
    else:
        return None
    family = data[offset + 16]
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    attrs = _attrs(data, offset + 20, offset + length)
    orig = attrs.get(CTA_TUPLE_ORIG)
    id_span = attrs.get(CTA_ID)
    if orig is None or id_span is None:
        return None
    ct_id = _BE32.unpack_from(data, id_span[0])[0]
    if wanted is not None and kind != "new" and not wanted(ct_id):
        return None
    flow = _tuple(data, orig[0], orig[1], family)
    if flow is None:
        return None
    status_span = attrs.get(CTA_STATUS)
    mark_span = attrs.get(CTA_MARK)
    info_span = attrs.get(CTA_PROTOINFO)
    protocol, source, destination, sport, dport = flow
    return CtEvent(
        kind=kind,
        ct_id=ct_id,
        protocol=protocol,
        source=source,
        destination=destination,
        source_port=sport,
        destination_port=dport,
        status=_BE32.unpack_from(data, status_span[0])[0] if status_span else 0,
        tcp_state=_tcp_state(data, *info_span) if info_span else None,
        mark=_BE32.unpack_from(data, mark_span[0])[0] if mark_span else 0,
    )


def decode_events(data: bytes, wanted: Wanted | None = None) -> list[CtEvent]:
    """Every conntrack event in one datagram read from the netlink socket."""
    events: list[CtEvent] = []
    offset = 0
    total = len(data)
    while offset + 16 <= total:
        length = _NLMSGHDR.unpack_from(data, offset)[0]
        if length < 16 or offset + length > total:
            break
        event = decode_message(data, offset, length, wanted)
        if event is not None:
            events.append(event)
        offset += (length + 3) & ~3
    return events
