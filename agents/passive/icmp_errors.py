"""Catch ICMP destination-unreachable errors and name the flow they quote.

Conntrack does not create an entry or send an event for an ICMP error: it
only marks the error packet RELATED to the flow, whose entry then sits
unanswered until it expires (30 s for UDP). To see `unreachable` at once, raw
ICMP / ICMPv6 sockets (in the followed namespace) receive every error
delivered to this host; `parse_icmp4` / `parse_icmp6` return the quoted
flow (protocol, source, destination, ports) as the sender sent it, which is
the conntrack original tuple of a flow this host opened. Errors about
forwarded traffic are not delivered locally and so are not seen here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable

from agents.nsexec import socket_in_netns
from agents.passive.tracker import FlowKey

log = logging.getLogger("pathwatch.agent.passive")

ICMP_DEST_UNREACH = 3
#: net, host, protocol, port unreachable; net / host / communication administratively prohibited
UNREACHABLE_CODES_V4 = frozenset({0, 1, 2, 3, 9, 10, 13})
ICMP6_DST_UNREACH = 1
ICMP6_FILTER = 1
_PORTS = struct.Struct(">HH")
_TRANSPORT = frozenset({socket.IPPROTO_TCP, socket.IPPROTO_UDP})

OnError = Callable[[FlowKey, float, float], None]


def parse_icmp4(packet: bytes) -> FlowKey | None:
    """The flow quoted by an IPv4 packet carrying ICMP destination unreachable."""
    if len(packet) < 20:
        return None
    header = (packet[0] & 0x0F) * 4
    icmp = packet[header:]
    if len(icmp) < 8 + 20 + 4 or icmp[0] != ICMP_DEST_UNREACH:
        return None
    if icmp[1] not in UNREACHABLE_CODES_V4:
        return None
    quoted = icmp[8:]
    quoted_header = (quoted[0] & 0x0F) * 4
    protocol = quoted[9]
    if protocol not in _TRANSPORT or len(quoted) < quoted_header + 4:
        return None
    source = socket.inet_ntop(socket.AF_INET, quoted[12:16])
    destination = socket.inet_ntop(socket.AF_INET, quoted[16:20])
    sport, dport = _PORTS.unpack_from(quoted, quoted_header)
    return protocol, source, destination, sport, dport


def parse_icmp6(message: bytes) -> FlowKey | None:
    """The flow quoted by an ICMPv6 destination unreachable message (no IPv6 header)."""
    if len(message) < 8 + 40 + 4 or message[0] != ICMP6_DST_UNREACH:
        return None
    quoted = message[8:]
    protocol = quoted[6]
    if protocol not in _TRANSPORT:
        return None
    source = socket.inet_ntop(socket.AF_INET6, quoted[8:24])
    destination = socket.inet_ntop(socket.AF_INET6, quoted[24:40])
    sport, dport = _PORTS.unpack_from(quoted, 40)
    return protocol, source, destination, sport, dport


def _icmp6_filter_only_unreachable() -> bytes:
    words = [0xFFFFFFFF] * 8
    words[ICMP6_DST_UNREACH >> 5] &= ~(1 << (ICMP6_DST_UNREACH & 31)) & 0xFFFFFFFF
    return struct.pack("=8I", *words)


class IcmpErrorWatcher:
    """Raw ICMP / ICMPv6 sockets read from the event loop; each quoted flow goes to `on_error`."""

    def __init__(self, on_error: OnError, *, netns: str | None = None) -> None:
        self.on_error = on_error
        self.netns = netns
        self.socks: list[tuple[socket.socket, Callable[[bytes], FlowKey | None]]] = []
        self.errors_seen = 0

    def _open(self, family: int, proto: int) -> socket.socket:
        if self.netns is None:
            return socket.socket(family, socket.SOCK_RAW, proto)
        return socket_in_netns(self.netns, family, socket.SOCK_RAW, proto)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        v4 = self._open(socket.AF_INET, socket.IPPROTO_ICMP)
        self.socks.append((v4, parse_icmp4))
        try:
            v6 = self._open(socket.AF_INET6, socket.IPPROTO_ICMPV6)
            v6.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, _icmp6_filter_only_unreachable())
            self.socks.append((v6, parse_icmp6))
        except OSError as exc:
            log.info("no ICMPv6 error watcher: %s", exc)
        for sock, parse in self.socks:
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._readable, sock, parse)

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        for sock, _parse in self.socks:
            loop.remove_reader(sock.fileno())
            sock.close()
        self.socks = []

    def _readable(self, sock: socket.socket, parse: Callable[[bytes], FlowKey | None]) -> None:
        for _ in range(256):
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                return
            except OSError as exc:
                log.debug("icmp watcher: %s", exc)
                return
            flow = parse(data)
            if flow is not None:
                self.errors_seen += 1
                self.on_error(flow, time.monotonic(), time.time())
