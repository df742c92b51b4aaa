"""Follow conntrack events from the kernel (the host, or a named network namespace).

`ConntrackFollower` opens a NETLINK_NETFILTER socket joined to the conntrack
NEW, UPDATE and DESTROY groups, with a large receive buffer, and reads it
from the event loop (`add_reader`): each readable burst is drained into one
reused buffer, decoded (`agents.passive.events`) and each event handed to
`on_event` with its receive time (monotonic and wall); `wanted` lets UPDATE /
DESTROY events of sessions nobody tracks be skipped after reading only their
id. An overrun (ENOBUFS: the kernel dropped events because we were slow) is
counted and reported to `on_gap`.

Under load the follower paces itself: when a drain found many events and
they carry the kernel's timestamps (so the moment they are read does not
matter), it stops watching the socket and drains again `BUSY_PAUSE` s
later, letting events gather. Each event then costs the kernel no wake-up
of the agent and the agent no trip through the event loop; once a drain
finds few events it watches the socket again. Without kernel timestamps it
always reads at once, since the read time is then the session's clock.

The kernel must track connections in that namespace (conntrack is loaded
there once any nftables / iptables rule uses it, e.g. `ct state`) and send
events (`net.netfilter.nf_conntrack_events` 1, or 2 = when someone listens,
the default); `conntrack_settings` reads these and `nf_conntrack_timestamp`
(1 = events carry the kernel's time, see `agents.passive.events`) for the
start-up log.
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
#: datagrams read at most per drain before the loop gets a turn
_BURST = 512
#: a drain that read at least this many datagrams means the socket is busy
BUSY_BATCH = 32
#: seconds between drains while busy
BUSY_PAUSE = 0.002

OnEvent = Callable[[CtEvent, float, float], None]
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
        on_event: OnEvent,
        on_gap: OnGap,
        *,
        netns: str | None = None,
        wanted: Wanted | None = None,
    ) -> None:
        self.on_event = on_event
        self.wanted = wanted
        self.on_gap = on_gap
        self.netns = netns
        self.sock: socket.socket | None = None
        self._buffer = bytearray(_READ_SIZE)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watching = False
        self._timer: asyncio.Handle | None = None
        #: whether the last event read carried the kernel's timestamp
        self._stamped = False
        #: datagrams read (one event each, as ctnetlink sends them)
        self.datagrams = 0
        self.overruns = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = open_conntrack_socket(self.netns)
        self._loop = loop
        self._watch()

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.sock is not None:
            if self._watching:
                loop.remove_reader(self.sock.fileno())
                self._watching = False
            self.sock.close()
            self.sock = None

    def _watch(self) -> None:
        assert self._loop is not None and self.sock is not None
        self._loop.add_reader(self.sock.fileno(), self._readable)
        self._watching = True

    def _readable(self) -> None:
        read = self._drain()
        if read >= BUSY_BATCH and self._stamped and self.sock is not None:
            assert self._loop is not None
            self._loop.remove_reader(self.sock.fileno())
            self._watching = False
            self._timer = self._loop.call_later(BUSY_PAUSE, self._paced)

    def _paced(self) -> None:
        self._timer = None
        if self.sock is None or self._loop is None:
            return
        read = self._drain()
        if read >= _BURST:
            self._timer = self._loop.call_soon(self._paced)
        elif read >= BUSY_BATCH and self._stamped:
            self._timer = self._loop.call_later(BUSY_PAUSE, self._paced)
        else:
            self._watch()

    def _drain(self) -> int:
        """Read, decode and hand on what is waiting (at most `_BURST` datagrams); how many."""
        sock = self.sock
        if sock is None:
            return 0
        buffer = self._buffer
        receive = sock.recv_into
        wanted = self.wanted
        on_event = self.on_event
        monotonic, wall_clock = time.monotonic, time.time
        event: CtEvent | None = None
        read = 0
        while read < _BURST:
            try:
                size = receive(buffer)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.overruns += 1
                    log.warning("conntrack events lost (receive buffer overrun)")
                    self.on_gap()
                    continue
                raise
            read += 1
            events = decode_events(buffer, wanted, size)
            if events:
                now, wall = monotonic(), wall_clock()
                for event in events:
                    on_event(event, now, wall)
        self.datagrams += read
        if event is not None:
            self._stamped = event.kernel_ns != 0
        return read
