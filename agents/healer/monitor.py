"""The healer's monitor stream: its service's path states and the health of the control plane.

Path states come from a watch on KV `pathwatch-paths` (keys `<service>.*`),
read whole at start and after every NATS reconnect or broken watch.
The control plane is up when NATS is connected, the watch is alive, and the
active enforcer's lease (KV `pathwatch-leases`) has not expired. Malformed
values are counted by reason and dropped; the previous state is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable

import msgspec
import nats.errors
from nats.js.errors import KeyDeletedError, KeyNotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from pathwatch.bus import Bus
from schemas import subjects
from schemas.codec import DecodeError, decode_message
from schemas.wire import PathState

log = logging.getLogger("pathwatch.healer")

#: Key of the enforcer's lease in KV `pathwatch-leases` (written by enforcer/lease.py).
LEASE_KEY = "enforcer"
#: Seconds to wait for each entry of the initial KV snapshot.
SNAPSHOT_ENTRY_TIMEOUT = 2.0


class LeaseView(msgspec.Struct, frozen=True):
    """The lease record as the enforcer writes it: holder and expiry (Unix seconds)."""

    holder: str
    expires: float


class PathMonitor:
    """Follows one service's path states and the control plane; `run(stop)` until stopped."""

    def __init__(
        self,
        bus: Bus,
        service: str,
        *,
        on_change: Callable[[], None],
        clock: Callable[[], float] = time.time,
        lease_poll: float = 0.5,
    ) -> None:
        self.bus = bus
        self.service = service
        self.on_change = on_change
        self.clock = clock
        self.lease_poll = lease_poll
        self.states: dict[str, PathState] = {}
        self.malformed: Counter[str] = Counter()
        self.lease: LeaseView | None = None
        self.watch_alive = False
        self.resyncs = 0
        self._resync = asyncio.Event()
        self._watcher: KeyValue.KeyWatcher | None = None
        self._follow_task: asyncio.Task[None] | None = None

    # --- what the healer asks ---------------------------------------------------

    def lease_live(self) -> bool:
        return self.lease is not None and self.lease.expires >= self.clock()

    def control_up(self) -> bool:
        """NATS connected, the watch alive and a live enforcer lease."""
        return self.bus.nc.is_connected and self.watch_alive and self.lease_live()

    def state_of(self, route: str) -> PathState | None:
        return self.states.get(subjects.path_key(self.service, route))

    def reported_down(self, route: str) -> bool:
        """The route is out of service and not kept as best-effort."""
        state = self.state_of(route)
        return state is not None and not state.in_service and not state.best_effort

    # --- the stream -------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self.bus.reconnect_callbacks.append(self._on_reconnect)
        self._resync.set()
        try:
            while not stop.is_set():
                if self._resync.is_set():
                    self._resync.clear()
                    if not await self._start_watch():
                        self._resync.set()
                await self._poll_lease()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.lease_poll)
        finally:
            with contextlib.suppress(ValueError):
                self.bus.reconnect_callbacks.remove(self._on_reconnect)
            await self._stop_watch()

    async def _on_reconnect(self) -> None:
        self._resync.set()

    async def _poll_lease(self) -> None:
        previous = self.control_up()
        if not self.bus.nc.is_connected:
            self.lease = None
        else:
            try:
                kv = await self.bus.kv(subjects.KV_LEASES)
                entry = await kv.get(LEASE_KEY)
                self.lease = msgspec.json.decode(entry.value or b"", type=LeaseView)
            except (KeyNotFoundError, KeyDeletedError):
                self.lease = None
            except msgspec.DecodeError:
                self.malformed["lease-json"] += 1
                self.lease = None
            except (nats.errors.Error, TimeoutError, OSError) as exc:
                log.debug("lease poll failed: %s", exc)
                self.lease = None
        if self.control_up() != previous:
            self.on_change()

    async def _start_watch(self) -> bool:
        await self._stop_watch()
        try:
            kv = await self.bus.kv(subjects.KV_PATHS)
            watcher = await kv.watch(f"{self.service}.*")
            states: dict[str, PathState] = {}
            while True:
                entry = await watcher.updates(timeout=SNAPSHOT_ENTRY_TIMEOUT)  # type: ignore[no-untyped-call]
                if entry is None:
                    break
                self._fold(states, entry)
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            log.warning("healer: cannot watch %s yet: %s", subjects.KV_PATHS, exc)
            self.watch_alive = False
            return False
        self._watcher = watcher
        self.states = states
        self.watch_alive = True
        self.resyncs += 1
        self._follow_task = asyncio.create_task(self._follow(watcher), name="healer-kv-watch")
        self.on_change()
        return True

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        try:
            async for entry in watcher:
                if entry is None:
                    continue
                self._fold(self.states, entry)
                self.on_change()
        except Exception:
            log.exception("healer: watch of %s broke; resyncing", subjects.KV_PATHS)
        self.watch_alive = False
        self._resync.set()
        self.on_change()

    def _fold(self, states: dict[str, PathState], entry: KeyValue.Entry) -> None:
        if entry.operation in (KV_DEL, KV_PURGE):
            states.pop(entry.key, None)
            return
        try:
            states[entry.key] = decode_message(entry.value or b"", PathState)
        except DecodeError as exc:
            self.malformed[f"path-state-{exc.reason}"] += 1
            log.warning("healer: dropping malformed PathState %s: %s", entry.key, exc)

    async def _stop_watch(self) -> None:
        task, self._follow_task = self._follow_task, None
        watcher, self._watcher = self._watcher, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if watcher is not None:
            with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                await watcher.stop()  # type: ignore[no-untyped-call]
