"""Decode ctnetlink event messages (conntrack NEW / UPDATE / DESTROY) into `CtEvent`s.

pyroute2's generic netlink parser builds a full object tree per message,
which costs far more than the few fields a session needs; at tens of
thousands of events a second that is the bottleneck. `decode_events` walks
the top-level attributes once, noting where each one the tracker needs
starts, and reads only those with `struct`: the original tuple (only for
NEW events, or for every event when decoding everything), status, TCP state,
mark, id and the kernel's event timestamp. The layout is the one pyroute2's
`nfct_msg` describes, and `tests/test_passive_kernel.py` checks both
decoders agree on messages the kernel produced.

`CTA_TIMESTAMP_EVENT` (Linux 6.14 and later, when
`net.netfilter.nf_conntrack_timestamp` is 1) is the kernel's wall clock, in
ns, when the packet that caused the event went through conntrack; the
tracker times sessions with it instead of with the moment the agent read
the event.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

Data = bytes | bytearray

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
CTA_TIMESTAMP_EVENT: Final = 27
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
_BE64 = struct.Struct(">Q")
_NLA_TYPE_MASK = 0x3FFF
#: top-level attribute numbers noted per message (CTA_MAX is 27 today)
_SLOTS = 32
_NO_SLOTS = [0] * _SLOTS
# The usual layout of an IPv4 TCP / UDP tuple, read with one unpack each and
# checked field by field (any other layout takes the general path):
# CTA_TUPLE_IP {SRC 4 bytes, DST 4 bytes}, CTA_TUPLE_PROTO {NUM 1, SRC_PORT 2, DST_PORT 2}
_V4_ADDRESSES = struct.Struct("=H2xHH4sHH4sH2x")
_V4_ADDRESSES_LAYOUT = (20, 8, CTA_IP_V4_SRC, 8, CTA_IP_V4_DST, 28)
_PORTS = struct.Struct("=HHB3xHHH2xHHH2x")
_PORTS_LAYOUT = (5, CTA_PROTO_NUM, 6, CTA_PROTO_SRC_PORT, 6, CTA_PROTO_DST_PORT)
_TCP_STATE = struct.Struct("=HHHHB")
_NO_FLOW = (0, "", "", 0, 0)


@dataclass(slots=True)
class CtEvent:
    """One conntrack event: what the session tracker needs of it.

    The flow (`protocol`, addresses, ports) is decoded for NEW events; UPDATE
    and DESTROY events decoded for a `wanted` session leave it empty (0 and
    "") because the tracker knows the session's flow from its NEW event.
    `kernel_ns` is the kernel's event time (Unix ns), 0 when it sent none.
    """

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
    kernel_ns: int = 0


def _nested(data: Data, start: int, end: int) -> list[int]:
    """Where each attribute in [start, end) starts (its header), by number; 0 = absent."""
    found = _NO_SLOTS.copy()
    unpack = _NLA.unpack_from
    offset = start
    while offset + 4 <= end:
        length, number = unpack(data, offset)
        if length < 4:
            break
        number &= _NLA_TYPE_MASK
        if number < _SLOTS:
            found[number] = offset
        offset += (length + 3) & ~3
    return found


def _end(data: Data, at: int) -> int:
    """Where the attribute at `at` ends."""
    length: int = _NLA.unpack_from(data, at)[0]
    return at + length


def _tuple(data: Data, at: int, family: int) -> tuple[int, str, str, int, int] | None:
    """(protocol, source, destination, source port, destination port) of a CTA_TUPLE_*."""
    if family == socket.AF_INET:
        (ip_len, s_len, s_type, source, d_len, d_type, dest, p_len) = _V4_ADDRESSES.unpack_from(
            data, at + 4
        )
        if (ip_len, s_len, s_type, d_len, d_type, p_len) == _V4_ADDRESSES_LAYOUT:
            (n_len, n_type, number, sp_len, sp_type, sport, dp_len, dp_type, dport) = (
                _PORTS.unpack_from(data, at + 28)
            )
            if (n_len, n_type, sp_len, sp_type, dp_len, dp_type) == _PORTS_LAYOUT:
                return (
                    number,
                    socket.inet_ntop(family, source),
                    socket.inet_ntop(family, dest),
                    socket.ntohs(sport),
                    socket.ntohs(dport),
                )
    return _any_tuple(data, at, family)


def _any_tuple(data: Data, at: int, family: int) -> tuple[int, str, str, int, int] | None:
    """`_tuple` for any layout (IPv6, protocols without ports, unusual attribute order)."""
    parts = _nested(data, at + 4, _end(data, at))
    ip_at, proto_at = parts[CTA_TUPLE_IP], parts[CTA_TUPLE_PROTO]
    if not ip_at or not proto_at:
        return None
    ips = _nested(data, ip_at + 4, _end(data, ip_at))
    if family == socket.AF_INET:
        src_at, dst_at, size = ips[CTA_IP_V4_SRC], ips[CTA_IP_V4_DST], 4
    else:
        src_at, dst_at, size = ips[CTA_IP_V6_SRC], ips[CTA_IP_V6_DST], 16
    protos = _nested(data, proto_at + 4, _end(data, proto_at))
    num_at = protos[CTA_PROTO_NUM]
    if not src_at or not dst_at or not num_at:
        return None
    source = socket.inet_ntop(family, data[src_at + 4 : src_at + 4 + size])
    destination = socket.inet_ntop(family, data[dst_at + 4 : dst_at + 4 + size])
    sport_at, dport_at = protos[CTA_PROTO_SRC_PORT], protos[CTA_PROTO_DST_PORT]
    sport = _BE16.unpack_from(data, sport_at + 4)[0] if sport_at else 0
    dport = _BE16.unpack_from(data, dport_at + 4)[0] if dport_at else 0
    return data[num_at + 4], source, destination, sport, dport


def _tcp_state(data: Data, at: int) -> int | None:
    """CTA_PROTOINFO_TCP_STATE inside the CTA_PROTOINFO at `at`, if any."""
    tcp_len, tcp_type, state_len, state_type, state = _TCP_STATE.unpack_from(data, at + 4)
    if (
        tcp_type & _NLA_TYPE_MASK == CTA_PROTOINFO_TCP
        and state_type == CTA_PROTOINFO_TCP_STATE
        and tcp_len >= 9
        and state_len == 5
    ):
        return int(state)
    tcp_at = _nested(data, at + 4, _end(data, at))[CTA_PROTOINFO_TCP]
    if not tcp_at:
        return None
    state_at = _nested(data, tcp_at + 4, _end(data, tcp_at))[CTA_PROTOINFO_TCP_STATE]
    return data[state_at + 4] if state_at else None


def _id_after_tuples(data: Data, start: int, end: int) -> int:
    """Where ctnetlink usually puts the CTA_ID attribute, right after the two
    tuples, when it is there; else 0.

    Lets an event of a session nobody tracks be dropped without walking all
    of its attributes."""
    unpack = _NLA.unpack_from
    at = start
    for _tuple_attr in range(2):
        if at + 4 > end:
            return 0
        at += (unpack(data, at)[0] + 3) & ~3
    if at + 8 > end:
        return 0
    size, number = unpack(data, at)
    return at if size == 8 and number & _NLA_TYPE_MASK == CTA_ID else 0


#: Whether an UPDATE / DESTROY of this conntrack id is worth decoding (NEW always is).
Wanted = Callable[[int], bool]


def decode_message(
    data: Data, offset: int, length: int, wanted: Wanted | None = None
) -> CtEvent | None:
    """The event in the netlink message at `offset`, or None when it is not one.

    With `wanted`, UPDATE and DESTROY events of ids it refuses are skipped
    after reading only the id (sessions already settled or never tracked),
    and those it accepts are decoded without their flow.
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
    if family != socket.AF_INET and family != socket.AF_INET6:
        return None
    start, end = offset + 20, offset + length
    if wanted is not None and kind != "new":
        id_at = _id_after_tuples(data, start, end)
        if id_at:
            ct_id: int = _BE32.unpack_from(data, id_at + 4)[0]
            if not wanted(ct_id):
                return None
            return _event(data, kind, ct_id, _NO_FLOW, _nested(data, id_at + 8, end))
    found = _nested(data, start, end)
    orig_at, id_at = found[CTA_TUPLE_ORIG], found[CTA_ID]
    if not orig_at or not id_at:
        return None
    ct_id = _BE32.unpack_from(data, id_at + 4)[0]
    if wanted is not None and kind != "new":
        if not wanted(ct_id):
            return None
        return _event(data, kind, ct_id, _NO_FLOW, found)
    flow = _tuple(data, orig_at, family)
    return _event(data, kind, ct_id, flow, found) if flow is not None else None


def _event(
    data: Data, kind: EventKind, ct_id: int, flow: tuple[int, str, str, int, int], found: list[int]
) -> CtEvent:
    """The `CtEvent` from the attribute positions `found` (0 = absent)."""
    status_at, info_at = found[CTA_STATUS], found[CTA_PROTOINFO]
    mark_at, stamp_at = found[CTA_MARK], found[CTA_TIMESTAMP_EVENT]
    return CtEvent(
        kind,
        ct_id,
        *flow,
        _BE32.unpack_from(data, status_at + 4)[0] if status_at else 0,
        _tcp_state(data, info_at) if info_at else None,
        _BE32.unpack_from(data, mark_at + 4)[0] if mark_at else 0,
        _BE64.unpack_from(data, stamp_at + 4)[0] if stamp_at else 0,
    )


def decode_events(data: Data, wanted: Wanted | None = None, size: int = -1) -> list[CtEvent]:
    """Every conntrack event in one datagram read from the netlink socket.

    `size` is how much of `data` the datagram fills (all of it when -1), so
    one receive buffer can be reused for every read.
    """
    events: list[CtEvent] = []
    offset = 0
    total = len(data) if size < 0 else size
    while offset + 16 <= total:
        length = _NLMSGHDR.unpack_from(data, offset)[0]
        if length < 16 or offset + length > total:
            break
        event = decode_message(data, offset, length, wanted)
        if event is not None:
            events.append(event)
        offset += (length + 3) & ~3
    return events
