"""One shared ICMP echo engine per agent: accurate RTTs at high concurrency.

icmplib's multiping opens a raw socket per in-flight ping and the kernel hands
every ICMP reply to every raw socket, which inflates loopback RTT from about
0.05 ms to several ms at 50 concurrent pings. This engine instead keeps one
socket per (family, interface, source address), registered with the asyncio
loop through `loop.add_reader`; replies are matched to their request by
identifier and sequence number.

* Raw sockets (privileged): the engine picks the identifier; an ICMP filter
  lets only echo replies and errors through. Destination-unreachable errors
  quoting one of our requests complete it with outcome `unreachable`.
* Unprivileged datagram ICMP sockets (`net.ipv4.ping_group_range`): the
  kernel rewrites the identifier to the socket's own and delivers only the
  replies to that identifier, so replies are matched by sequence number (and
  source address).
* Neither allowed: `IcmpUnavailable` with what to change.

Receive times are the kernel's (SO_TIMESTAMPNS), send times are taken right
before `sendto`, so event-loop delays do not inflate the RTT. DSCP is set per
packet (IP_TOS / IPV6_TCLASS = dscp << 2) on the shared socket.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Literal

from agents.probe.sockopts import SO_TIMESTAMPNS, family_of, kernel_time_ns

PingOutcome = Literal["ok", "timeout", "send-failed", "unreachable"]

_SOL_RAW = 255
_ICMP_FILTER = 1
_ICMP6_FILTER = 1
_ECHO_REQUEST = {socket.AF_INET: 8, socket.AF_INET6: 128}
_ECHO_REPLY = {socket.AF_INET: 0, socket.AF_INET6: 129}
_UNREACHABLE = {socket.AF_INET: 3, socket.AF_INET6: 1}
_PAYLOAD = b"pathwatch-icmp-probe-0123456789abcdef0123456789abcdef0123"[:56]
_UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH}


class IcmpUnavailable(RuntimeError):
    """Neither a raw nor a datagram ICMP socket may be opened."""


@dataclass(frozen=True)
class PingResult:
    """One echo request: `sent_at` is Unix time, `rtt_ms` set only for `ok`."""

    outcome: PingOutcome
    sent_at: float
    rtt_ms: float | None = None
    detail: str = ""


@dataclass
class IcmpCounters:
    """Router ICMP counters: success, response-timeout, failed-to-send (+ unreachable)."""

    success: int = 0
    response_timeout: int = 0
    failed_to_send: int = 0
    unreachable: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "icmp_success": self.success,
            "icmp_response_timeout": self.response_timeout,
            "icmp_failed_to_send": self.failed_to_send,
            "icmp_unreachable": self.unreachable,
        }


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


@dataclass
class _Pending:
    future: asyncio.Future[PingResult]
    destination: str
    sent_ns: int
    timer: asyncio.TimerHandle | None = None


@dataclass
class _IcmpSocket:
    """One open ICMP socket and the requests waiting for its replies."""

    sock: socket.socket
    family: socket.AddressFamily
    raw: bool
    ident: int
    counters: IcmpCounters
    pending: dict[int, _Pending] = field(default_factory=dict)
    next_seq: int = 0
    tos: int = -1

    def _alloc_seq(self) -> int:
        for _ in range(65536):
            seq = self.next_seq
            self.next_seq = (self.next_seq + 1) & 0xFFFF
            if seq not in self.pending:
                return seq
        raise RuntimeError("65536 ICMP requests in flight on one socket")

    def _set_tos(self, dscp: int) -> None:
        tos = dscp << 2
        if tos == self.tos:
            return
        if self.family == socket.AF_INET:
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
        else:
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, tos)
        self.tos = tos

    async def ping(self, address: str, timeout: float, dscp: int) -> PingResult:
        loop = asyncio.get_running_loop()
        seq = self._alloc_seq()
        header = struct.pack("!BBHHH", _ECHO_REQUEST[self.family], 0, 0, self.ident, seq)
        checksum = _checksum(header + _PAYLOAD) if self.family == socket.AF_INET else 0
        packet = struct.pack("!BBHHH", _ECHO_REQUEST[self.family], 0, checksum, self.ident, seq)
        packet += _PAYLOAD
        future: asyncio.Future[PingResult] = loop.create_future()
        sent_at = time.time()
        try:
            self._set_tos(dscp)
            sent_ns = time.time_ns()
            self.sock.sendto(packet, (address, 0))
        except OSError as exc:
            if exc.errno in _UNREACHABLE_ERRNOS:
                self.counters.unreachable += 1
                return PingResult("unreachable", sent_at, detail=str(exc))
            self.counters.failed_to_send += 1
            return PingResult("send-failed", sent_at, detail=str(exc))
        pending = _Pending(future, address, sent_ns)
        pending.timer = loop.call_later(timeout, self._expire, seq, future, sent_at)
        self.pending[seq] = pending
        return await future

    def _expire(self, seq: int, future: asyncio.Future[PingResult], sent_at: float) -> None:
        pending = self.pending.get(seq)
        if pending is not None and pending.future is future:
            del self.pending[seq]
        if not future.done():
            self.counters.response_timeout += 1
            future.set_result(PingResult("timeout", sent_at))

    def on_readable(self) -> None:
        """Read every queued datagram and complete the requests they answer."""
        while True:
            try:
                data, ancdata, _flags, peer = self.sock.recvmsg(2048, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # asynchronous errors (IP_RECVERR) on datagram sockets: nothing to match
                return
            self._handle(data, peer[0], kernel_time_ns(ancdata))

    def _handle(self, data: bytes, peer: str, received_ns: int) -> None:
        icmp = data
        if self.raw and self.family == socket.AF_INET:
            icmp = data[(data[0] & 0x0F) * 4 :] if data else b""
        if len(icmp) < 8:
            return
        kind, _code, _csum, ident, seq = struct.unpack("!BBHHH", icmp[:8])
        if kind == _ECHO_REPLY[self.family]:
            if self.raw and ident != self.ident:
                return
            pending = self.pending.get(seq)
            if pending is None or pending.destination.split("%")[0] != peer.split("%")[0]:
                return
            self._complete(seq, pending, "ok", received_ns)
        elif kind == _UNREACHABLE[self.family] and self.raw:
            quoted = icmp[8:]
            if self.family == socket.AF_INET:
                if not quoted:
                    return
                quoted = quoted[(quoted[0] & 0x0F) * 4 :]
            else:
                quoted = quoted[40:]
            if len(quoted) < 8:
                return
            qkind, _qcode, _qcsum, qident, qseq = struct.unpack("!BBHHH", quoted[:8])
            if qkind != _ECHO_REQUEST[self.family] or qident != self.ident:
                return
            pending = self.pending.get(qseq)
            if pending is not None:
                self._complete(qseq, pending, "unreachable", received_ns)

    def _complete(
        self, seq: int, pending: _Pending, outcome: PingOutcome, received_ns: int
    ) -> None:
        del self.pending[seq]
        if pending.timer is not None:
            pending.timer.cancel()
        if pending.future.done():
            return
        sent_at = pending.sent_ns / 1e9
        if outcome == "ok":
            self.counters.success += 1
            rtt_ms = max(received_ns - pending.sent_ns, 0) / 1e6
            pending.future.set_result(PingResult("ok", sent_at, rtt_ms))
        else:
            self.counters.unreachable += 1
            pending.future.set_result(PingResult(outcome, sent_at, detail="icmp unreachable"))

    def close(self) -> None:
        for pending in self.pending.values():
            if pending.timer is not None:
                pending.timer.cancel()
            if not pending.future.done():
                pending.future.cancel()
        self.pending.clear()
        self.sock.close()


def _filter_option(family: socket.AddressFamily) -> tuple[int, int, bytes]:
    """Kernel-side filter letting only echo replies and unreachable errors through."""
    wanted = (_ECHO_REPLY[family], _UNREACHABLE[family])
    if family == socket.AF_INET:
        mask = 0xFFFFFFFF
        for kind in (*wanted, 11):
            mask &= ~(1 << kind)
        return _SOL_RAW, _ICMP_FILTER, struct.pack("I", mask)
    words = [0xFFFFFFFF] * 8
    for kind in wanted:
        words[kind >> 5] &= ~(1 << (kind & 31))
    return socket.IPPROTO_ICMPV6, _ICMP6_FILTER, struct.pack("8I", *words)


def open_icmp_socket(
    family: socket.AddressFamily, privileged: bool | None = None
) -> tuple[socket.socket, bool]:
    """Open a raw (privileged) or datagram ICMP socket; (socket, is_raw).

    `privileged=None` tries raw first and falls back to datagram.
    """
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    errors: list[str] = []
    if privileged is not False:
        try:
            return socket.socket(family, socket.SOCK_RAW, proto), True
        except PermissionError as exc:
            errors.append(f"raw socket: {exc.strerror}")
            if privileged:
                raise IcmpUnavailable(
                    "cannot open a raw ICMP socket: needs root or CAP_NET_RAW"
                ) from None
    try:
        return socket.socket(family, socket.SOCK_DGRAM, proto), False
    except OSError as exc:
        errors.append(f"datagram socket: {exc.strerror}")
    raise IcmpUnavailable(
        "cannot open an ICMP socket ("
        + "; ".join(errors)
        + "): run as root / grant CAP_NET_RAW, or allow unprivileged ping with"
        " sysctl net.ipv4.ping_group_range to include this group "
        f"(gid {os.getgid()})"
    )


BindingKey = tuple[int, str | None, str | None]


class IcmpEngine:
    """Echo requests over shared sockets; create and use it inside one event loop."""

    def __init__(self, privileged: bool | None = None, rcvbuf: int = 1 << 20) -> None:
        self.privileged = privileged
        self.rcvbuf = rcvbuf
        self.counters = IcmpCounters()
        self._sockets: dict[BindingKey, _IcmpSocket] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def _socket(
        self, family: socket.AddressFamily, interface: str | None, source: str | None
    ) -> _IcmpSocket:
        key: BindingKey = (int(family), interface, source)
        found = self._sockets.get(key)
        if found is not None:
            return found
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        sock, raw = open_icmp_socket(family, self.privileged)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            if raw:
                sock.setsockopt(*_filter_option(family))
            if interface:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
            if source:
                sock.bind((source, 0))
            ident = random.randrange(1, 0xFFFF) if raw else 0
        except OSError:
            sock.close()
            raise
        entry = _IcmpSocket(sock, family, raw, ident, self.counters)
        loop.add_reader(sock.fileno(), entry.on_readable)
        self._sockets[key] = entry
        return entry

    def mode(self, family: socket.AddressFamily = socket.AF_INET) -> str:
        """`raw` or `datagram` for sockets opened so far of that family ('' if none)."""
        for (fam, _iface, _src), entry in self._sockets.items():
            if fam == int(family):
                return "raw" if entry.raw else "datagram"
        return ""

    async def ping(
        self,
        address: str,
        *,
        timeout: float,
        dscp: int = 0,
        interface: str | None = None,
        source: str | None = None,
    ) -> PingResult:
        """Send one echo request to `address` and wait up to `timeout` s for its reply."""
        try:
            entry = self._socket(family_of(address), interface, source)
        except IcmpUnavailable:
            raise
        except OSError as exc:
            self.counters.failed_to_send += 1
            return PingResult("send-failed", time.time(), detail=f"socket set-up: {exc}")
        return await entry.ping(address, timeout, dscp)

    def close(self) -> None:
        for entry in self._sockets.values():
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(entry.sock.fileno())
            entry.close()
        self._sockets.clear()
