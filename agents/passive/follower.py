"""Follow conntrack events from the kernel (the host, or a named network namespace).

`ConntrackFollower` opens a NETLINK_NETFILTER socket joined to the conntrack
NEW, UPDATE and DESTROY groups, with a large receive buffer, and reads it
from the event loop (`add_reader`): each readable burst is drained, decoded
(`agents.passive.events`) and handed to `on_events` with the receive time
(monotonic and wall); `wanted` lets UPDATE / DESTROY events of sessions
nobody tracks be skipped after reading only their id. An overrun (ENOBUFS: the kernel dropped
events because we were slow) is counted and reported to `on_gap`.

The kernel must track connections in that namespace (conntrack is loaded
there once any nftables / iptables rule uses it, e.g. `ct state`) and send
events (`net.netfilter.nf_conntrack_events` 1, or 2 = when someone listens,
the default); `conntrack_settings` reads both for a start-up warning.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path

from agents.nsexec import run_in_netns, socket_in_netns
from agents.passive.events import (
    GROUP_DESTROY,
    GROUP_NEW,
    GROUP_UPDATE,
    CtEvent,
    Wanted,
    decode_events,
)

log = logging.getLogger("pathwatch.agent.passive")

NETLINK_NETFILTER = 12
SO_RCVBUFFORCE = 33
RECEIVE_BUFFER = 256 * 1024 * 1024
_READ_SIZE = 1 << 16
_BURST = 512

OnEvents = Callable[[list[CtEvent], float, float], None]
OnGap = Callable[[], None]


def open_conntrack_socket(netns: str | None, receive_buffer: int = RECEIVE_BUFFER) -> socket.socket:
    """A non-blocking netlink socket bound to the conntrack event groups."""
    if netns is None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    else:
        sock = socket_in_netns(netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, receive_buffer)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.bind((0, GROUP_NEW | GROUP_UPDATE | GROUP_DESTROY))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _read_settings() -> dict[str, str]:
    base = Path("/proc/sys/net/netfilter")
    found: dict[str, str] = {}
    for name in ("nf_conntrack_events", "nf_conntrack_timestamp", "nf_conntrack_count"):
        path = base / name
        found[name] = path.read_text().strip() if path.exists() else "missing"
    return found


async def conntrack_settings(netns: str | None) -> dict[str, str]:
    """The namespace's conntrack sysctls (`missing` when conntrack is not loaded there)."""
    if netns is None:
        return _read_settings()

    async def read() -> dict[str, str]:
        return _read_settings()

    return await run_in_netns(netns, read)


class ConntrackFollower:
    """Reads conntrack events and hands them on; see the module docstring."""

    def __init__(
        self,
        on_events: OnEvents,
        on_gap: OnGap,
        *,
        netns: str | None = None,
        wanted: Wanted | None = None,
    ) -> None:
        self.on_events = on_events
        self.wanted = wanted
        self.on_gap = on_gap
        self.netns = netns
        self.sock: socket.socket | None = None
        #: datagrams read (one event each, as ctnetlink sends them)
        self.datagrams = 0
        self.overruns = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = open_conntrack_socket(self.netns)
        loop.add_reader(self.sock.fileno(), self._readable)

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.sock is not None:
            loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        for _ in range(_BURST):
            try:
                data = sock.recv(_READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.overruns += 1
                    log.warning("conntrack events lost (receive buffer overrun)")
                    self.on_gap()
                    continue
                raise
            self.datagrams += 1
            events = decode_events(data, self.wanted)
            if events:
                self.on_events(events, time.monotonic(), time.time())
