"""Faults on path 1 applied with as little delay as possible, so their time is known.

Starting `ip` or `nft` takes tens of milliseconds on a loaded host, and the
fault takes effect somewhere inside that: too vague a start for timings of
100 ms. `FaultSwitch` keeps what applies the fast faults ready: a netlink
socket inside router-1 (link down) and an interactive `nft -i` running there
(blackholes: the bed's own commands, one a line). `apply()` returns the wall
time just before the fault was handed over. Random loss (`iptables`) goes
through the bed as usual, timed before the command starts, so its figures
include that start-up. Clearing always goes through `Bed.clear_faults`.
"""

from __future__ import annotations

import contextlib
import subprocess
import time

from pyroute2 import AsyncIPRoute

from pathwatch.testbed import Bed


class FaultSwitch:
    """Fast faults on one bed's path 1; `await start()`, `await apply(...)`, `close()`."""

    def __init__(self, bed: Bed) -> None:
        self.bed = bed
        self._nft = subprocess.Popen(
            ["ip", "netns", "exec", bed.router1, "nft", "-i"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._ipr = AsyncIPRoute(netns=bed.router1)
        self._link_index: int | None = None

    async def start(self) -> FaultSwitch:
        async for link in await self._ipr.link("dump"):
            if link.get("ifname") == self.bed.router1_if_client:
                self._link_index = int(link["index"])
        if self._link_index is None:
            raise RuntimeError(f"{self.bed.router1_if_client} not found in {self.bed.router1}")
        return self

    async def apply(self, fault: str, loss_pct: float) -> float:
        """Apply `fault`; the wall time just before it was handed to the kernel or nft."""
        if fault == "link-down":
            at = time.time()
            await self._ipr.link("set", index=self._link_index, state="down")
            return at
        if fault in ("blackhole", "blackhole-oneway") and self._nft.stdin is not None:
            *prepare, last = self.bed.blackhole_commands(fault)
            self._nft.stdin.write("".join(f"{line}\n" for line in prepare))
            self._nft.stdin.flush()
            at = time.time()
            self._nft.stdin.write(f"{last}\n")
            self._nft.stdin.flush()
            return at
        at = time.time()
        self.bed.apply_fault(fault, loss_pct=loss_pct)
        return at

    def close(self) -> None:
        self._ipr.close()
        if self._nft.stdin is not None:
            with contextlib.suppress(OSError):
                self._nft.stdin.close()
        try:
            self._nft.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._nft.kill()
            self._nft.wait()
