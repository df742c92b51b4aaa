"""Socket options that pin a probe to its route and mark its traffic class.

SO_BINDTODEVICE binds to the next-hop interface, `bind()` to the next-hop
source address, and IP_TOS / IPV6_TCLASS carry the class's DSCP (dscp << 2).
SO_TIMESTAMPNS has the kernel stamp what a socket receives (`kernel_time_ns`),
so round-trip times do not include the event loop's delays.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # base imports the ICMP engine, which uses this module
    from agents.probe.base import Target

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def family_of(address: str) -> socket.AddressFamily:
    """The address family of an IP literal (the one place that decides it for probes)."""
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def tos_option(family: socket.AddressFamily, dscp: int) -> tuple[int, int, int]:
    """(level, option, value) that marks packets with `dscp`."""
    if family == socket.AF_INET6:
        return socket.IPPROTO_IPV6, socket.IPV6_TCLASS, dscp << 2
    return socket.IPPROTO_IP, socket.IP_TOS, dscp << 2


def pinned_socket(target: Target, kind: socket.SocketKind) -> socket.socket:
    """A non-blocking socket for `target.address`, marked and pinned to its route."""
    family = family_of(target.address)
    sock = socket.socket(family, kind)
    try:
        sock.setblocking(False)
        sock.setsockopt(*tos_option(family, target.dscp))
        if target.interface:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, target.interface.encode())
        if target.source_address:
            sock.bind((target.source_address, 0))
    except OSError:
        sock.close()
        raise
    return sock


def kernel_time_ns(ancdata: list[tuple[int, int, Any]]) -> int:
    """The kernel's receive time (ns since the epoch) in recvmsg ancillary data, or now."""
    for level, kind, cdata in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= 16:
            seconds, nanos = struct.unpack("@qq", cdata[:16])
            return int(seconds * 1_000_000_000 + nanos)
    return time.time_ns()
