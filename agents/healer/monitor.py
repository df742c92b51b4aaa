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

import nats.errors
from nats.js.errors import KeyDeletedError, KeyNotFoundError

from pathwatch.runtime.bus import Bus, PathStateFollower
from schemas import subjects
from schemas.codec import DecodeError, decode_message
from schemas.wire import EnforcerLease, PathState

log = logging.getLogger("pathwatch.healer")


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
        self.malformed: Counter[str] = Counter()
        self.lease: EnforcerLease | None = None
        self.resyncs = 0
        self._resync = asyncio.Event()
        self._paths = PathStateFollower(
            bus,
            on_change=lambda _key: self.on_change(),
            on_broken=self._watch_broken,
            malformed=self.malformed,
            keys=f"{service}.*",
            name="healer",
        )

    # --- what the healer asks ---------------------------------------------------

    @property
    def states(self) -> dict[str, PathState]:
        return self._paths.states

    @property
    def watch_alive(self) -> bool:
        return self._paths.watching

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
            await self._paths.stop()

    async def _on_reconnect(self) -> None:
        self._resync.set()

    async def _poll_lease(self) -> None:
        previous = self.control_up()
        if not self.bus.nc.is_connected:
            self.lease = None
        else:
            try:
                kv = await self.bus.kv(subjects.KV_LEASES)
                entry = await kv.get(subjects.LEASE_ENFORCER)
                self.lease = decode_message(entry.value or b"", EnforcerLease)
            except (KeyNotFoundError, KeyDeletedError):
                self.lease = None
            except DecodeError as exc:
                self.malformed[f"lease-{exc.reason}"] += 1
                self.lease = None
            except (nats.errors.Error, TimeoutError, OSError) as exc:
                log.debug("lease poll failed: %s", exc)
                self.lease = None
        if self.control_up() != previous:
            self.on_change()

    async def _start_watch(self) -> bool:
        try:
            await self._paths.resync()
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            log.warning("healer: cannot watch %s yet: %s", subjects.KV_PATHS, exc)
            self.on_change()
            return False
        self.resyncs += 1
        self.on_change()
        return True

    def _watch_broken(self) -> None:
        self._resync.set()
        self.on_change()
