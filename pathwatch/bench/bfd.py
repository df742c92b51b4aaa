"""FRR's bfdd on the failover bed: the same-run baseline of `pathwatch bench failover`.

Sessions, all at the same interval x multiplier as pathwatch's probes, each
measured at its client end (the end that would move the traffic):

* **single-hop** to each next hop (client <-> router-1 / router-2 on their
  link): sees a dead link or a dead next hop, not a forwarding blackhole or
  loss beyond it (the router itself still answers);
* **multihop** to the far end over each path (client <-> a /32 on the
  server's loopback that is routed over that path only, one session per
  path): sees what breaks forwarding on the path too.

One bfdd per namespace (client, both routers, server), run as FRR's own user
with a private pathspace and no zebra (static sessions need none). Each logs
its state changes with microsecond timestamps to its own file, which
`BfdBed` reads to know when a session went down. `find_bfdd()` is None when
FRR is not installed (Debian package `frr`); the bench then says so and
measures pathwatch alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pathwatch.testbed import Bed, bed_host

#: Where Debian's package puts the daemon (not on PATH).
BFDD_CANDIDATES = ("/usr/lib/frr/bfdd", "/usr/sbin/bfdd")
#: The far ends of the multihop sessions: host 21 / 22 of the service /24.
FAR_END = (bed_host(100, 21), bed_host(100, 22))
STOP_GRACE_S = 2.0

_STATE_CHANGE = re.compile(
    r"^(?P<at>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d+) BFD: \[[^\]]*\] state-change: "
    r"\[mhop:(?P<mhop>yes|no) peer:(?P<peer>\S+) local:(?P<local>\S+)[^\]]*\] "
    r"(?P<old>\S+) -> (?P<new>\S+)"
)


def find_bfdd() -> str | None:
    """Path of FRR's bfdd, or None when FRR is not installed."""
    for candidate in BFDD_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("bfdd")


@dataclass(frozen=True)
class Session:
    """One BFD session, named for the report ("multihop path-1")."""

    name: str
    route: str
    multihop: bool
    local: str
    peer: str


@dataclass(frozen=True)
class StateChange:
    """A state change of a session at its client end (wall-clock seconds)."""

    at: float
    multihop: bool
    peer: str
    local: str
    old: str
    new: str


def parse_state_change(line: str) -> StateChange | None:
    """The state change a bfdd log line reports (its local-time timestamp), if any."""
    found = _STATE_CHANGE.match(line)
    if found is None:
        return None
    at = datetime.strptime(found["at"], "%Y/%m/%d %H:%M:%S.%f").timestamp()
    return StateChange(
        at, found["mhop"] == "yes", found["peer"], found["local"], found["old"], found["new"]
    )


def bfdd_config(
    log_file: Path, peers: list[tuple[str, str, bool]], interval_ms: int, mult: int
) -> str:
    """A bfdd config: (peer, local address, multihop) sessions, state changes logged."""
    lines = [f"log file {log_file}", "log timestamp precision 6", "debug bfd peer", "bfd"]
    for peer, local, multihop in peers:
        lines += [
            f" peer {peer}{' multihop' if multihop else ''} local-address {local}",
            f"  receive-interval {interval_ms}",
            f"  transmit-interval {interval_ms}",
            f"  detect-multiplier {mult}",
            " exit",
        ]
    return "\n".join([*lines, "exit", ""])


@dataclass
class BfdBed:
    """bfdd in every namespace of a bed; `start()`, `poll()`, `stop()`."""

    bed: Bed
    binary: str
    interval_ms: int = 100
    multiplier: int = 3
    changes: list[StateChange] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="pathwatch-bfd-"))
        self._procs: list[subprocess.Popen[bytes]] = []
        self._offset = 0
        self._partial = ""
        made = self.bed
        self.sessions = [
            Session("single-hop path-1", "path-1", False, made.client_address1, made.gateway1),
            Session("single-hop path-2", "path-2", False, made.client_address2, made.gateway2),
            Session("multihop path-1", "path-1", True, made.client_address1, FAR_END[0]),
            Session("multihop path-2", "path-2", True, made.client_address2, FAR_END[1]),
        ]

    @property
    def client_log(self) -> Path:
        return self._dir / "client.log"

    def _route_far_ends(self) -> None:
        """Far-end /32s on the server's loopback, each routed over its own path."""
        made = self.bed
        for address, gateway, interface in (
            (FAR_END[0], made.gateway1, made.client_if1),
            (FAR_END[1], made.gateway2, made.client_if2),
        ):
            made.ns(made.server, "ip", "addr", "add", f"{address}/32", "dev", "lo")
            made.ns(
                made.client, "ip", "route", "add", f"{address}/32", "via", gateway, "dev", interface
            )

    def _daemon(self, namespace: str, name: str, peers: list[tuple[str, str, bool]]) -> None:
        log_file = self._dir / f"{name}.log"
        config = self._dir / f"{name}.conf"
        config.write_text(bfdd_config(log_file, peers, self.interval_ms, self.multiplier))
        pathspace = f"pw-{self.bed.tag}-{name}"
        command = [
            "ip", "netns", "exec", namespace, self.binary,
            "-f", str(config),
            "-i", str(self._dir / f"{name}.pid"),
            "-N", pathspace,
            "--vty_socket", str(self._dir),
            "-z", str(self._dir / "no-zebra"),
            "--bfdctl", str(self._dir / f"{name}.ctl"),
            "-P", "0",
        ]  # fmt: skip
        with open(self._dir / f"{name}.out", "wb") as out:
            self._procs.append(
                subprocess.Popen(
                    command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            )

    def start(self) -> BfdBed:
        """Route the far ends and start the daemons (they run as FRR's user: the
        directory is theirs to write)."""
        self._dir.chmod(0o777)
        self._route_far_ends()
        made = self.bed
        client_peers = [(s.peer, s.local, s.multihop) for s in self.sessions]
        self._daemon(made.client, "client", client_peers)
        self._daemon(made.router1, "router-1", [(made.client_address1, made.gateway1, False)])
        self._daemon(made.router2, "router-2", [(made.client_address2, made.gateway2, False)])
        self._daemon(
            made.server,
            "server",
            [(made.client_address1, FAR_END[0], True), (made.client_address2, FAR_END[1], True)],
        )
        return self

    def check_alive(self) -> None:
        for proc in self._procs:
            if proc.poll() is not None:
                out = (self._dir / "client.out").read_text(errors="replace")[-400:]
                raise RuntimeError(f"bfdd exited with status {proc.returncode}: {out}")

    def poll(self) -> None:
        """Read the client's new state changes."""
        try:
            with open(self.client_log, encoding="utf-8", errors="replace") as log:
                log.seek(self._offset)
                text = log.read()
                self._offset = log.tell()
        except FileNotFoundError:
            return
        text = self._partial + text
        lines = text.split("\n")
        self._partial = lines.pop()
        for line in lines:
            change = parse_state_change(line)
            if change is not None:
                self.changes.append(change)

    def _of(self, session: Session) -> list[StateChange]:
        return [
            c
            for c in self.changes
            if c.peer == session.peer
            and c.local == session.local
            and c.multihop == session.multihop
        ]

    def state(self, session: Session) -> str:
        changes = self._of(session)
        return changes[-1].new if changes else "down"

    def all_up(self) -> bool:
        self.poll()
        return all(self.state(session) == "up" for session in self.sessions)

    def down_after(self, session: Session, after: float) -> float | None:
        """When the session first left `up` at or after `after` (wall clock), if it did."""
        for change in self._of(session):
            if change.at >= after and change.old == "up" and change.new != "up":
                return change.at
        return None

    def downs_between(self, session: Session, start: float, end: float) -> int:
        return sum(
            1 for c in self._of(session) if start <= c.at < end and c.old == "up" and c.new != "up"
        )

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs = []
        with contextlib.suppress(OSError):
            shutil.rmtree(self._dir)
