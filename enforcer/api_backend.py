"""What the REST API reads and writes on NATS: live caches of path states and
alarms, and the `pathwatch-probes` bucket.

Path states are followed with a KV watcher, alarms by an ordered consumer on
PATHWATCH_ALARMS folded by id (the latest message of an alarm wins), so reads
never wait on NATS. Each change is told to the `listeners` (the status page's
live updates) as ("path", key) or ("alarm", id).
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Literal

from nats.aio.msg import Msg
from nats.js.errors import KeyDeletedError, KeyNotFoundError
from nats.js.kv import KeyValue

from pathwatch.bus import Bus
from schemas import subjects
from schemas.codec import DecodeError, decode_message, encode
from schemas.wire import Alarm, PathState, ProbeState

log = logging.getLogger("pathwatch.api")

ChangeKind = Literal["path", "alarm"]


class ApiBackend:
    """Caches fed by NATS plus probe-state storage."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.paths: dict[str, PathState] = {}
        self.alarms: dict[str, Alarm] = {}
        self.dropped = 0
        self.listeners: list[Callable[[ChangeKind, str], None]] = []
        #: Set when the API stops serving: long-lived responses end on it.
        self.closing = asyncio.Event()
        self._probes: KeyValue | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription: Any = None
        self._watcher: Any = None

    async def start(self, ready_timeout: float = 5.0) -> None:
        paths = await self.bus.kv(subjects.KV_PATHS)
        self._probes = await self.bus.kv(subjects.KV_PROBES)
        self._watcher = await paths.watchall()
        loaded = asyncio.Event()
        self._tasks.append(asyncio.create_task(self._follow_paths(loaded)))
        self._subscription = await self.bus.js.subscribe(
            subjects.ALARM_ALL, ordered_consumer=True, cb=self._on_alarm
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(loaded.wait(), ready_timeout)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self._subscription is not None:
                await self._subscription.unsubscribe()
        with contextlib.suppress(Exception):
            if self._watcher is not None:
                await self._watcher.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _follow_paths(self, loaded: asyncio.Event) -> None:
        async for entry in self._watcher:
            if entry is None:
                loaded.set()
                continue
            if entry.operation in ("DEL", "PURGE") or not entry.value:
                self.paths.pop(entry.key, None)
                self._changed("path", entry.key)
            else:
                try:
                    self.paths[entry.key] = decode_message(entry.value, PathState)
                    self._changed("path", entry.key)
                except DecodeError:
                    self.dropped += 1
            if entry.delta == 0:
                loaded.set()

    async def _on_alarm(self, msg: Msg) -> None:
        try:
            alarm = decode_message(msg.data, Alarm)
        except DecodeError:
            self.dropped += 1
            return
        self.alarms[alarm.id] = alarm
        self._changed("alarm", alarm.id)

    def _changed(self, kind: ChangeKind, key: str) -> None:
        for listener in self.listeners:
            listener(kind, key)

    # --- probe state --------------------------------------------------------

    @property
    def probes(self) -> KeyValue:
        if self._probes is None:
            raise RuntimeError("ApiBackend.start() was not awaited")
        return self._probes

    async def put_probe_state(self, key: str, state: ProbeState) -> None:
        await self.probes.put(key, encode(state))

    async def get_probe_state(self, key: str) -> ProbeState | None:
        try:
            entry = await self.probes.get(key)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        if not entry.value:
            return None
        try:
            return decode_message(entry.value, ProbeState)
        except DecodeError:
            return None

    async def delete_probe_state(self, key: str) -> None:
        await self.probes.delete(key)

    async def probe_keys(self, probe: str) -> list[str]:
        """Keys with any record of `probe`'s state (deleted ones included)."""
        return await self.bus.kv_keys(subjects.KV_PROBES, probe)
