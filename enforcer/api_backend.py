"""What the REST API reads and writes on NATS: live caches of path states and
alarms, and the `pathwatch-probes` bucket.

Path states are followed with a KV watcher (supervised: restarted if it ends),
alarms by an ordered consumer on PATHWATCH_ALARMS folded by id (the latest
message of an alarm wins), so reads never wait on NATS. Each change is told to
the `listeners` (the status page's live updates) as ("path", key) or
("alarm", id). What it drops is counted by `<input>:<reason>` and published as
the `api` role's status. The status of every role and the heartbeat of every
agent are kept in a `FleetBook` (`pathwatch show fleet`), and `fleet` compares
them with the latest revision in KV `pathwatch-config`.
"""

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, Literal

import nats.errors
from nats.aio.msg import Msg
from nats.js.errors import KeyDeletedError, KeyNotFoundError
from nats.js.kv import KeyValue

from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configsource import LiveConfig
from pathwatch.runtime.configstore import ConfigStore, StoreError
from pathwatch.runtime.fleet import FleetBook, FleetReport
from pathwatch.runtime.status import RoleCounters, decode_status, publish_status
from pathwatch.runtime.supervise import start_supervised
from schemas import subjects
from schemas.codec import DecodeError, decode_message, encode
from schemas.limits import MAX_ALARMS
from schemas.wire import AgentHeartbeat, Alarm, ConfigMark, PathState, ProbeState

#: Seconds the API waits for KV when it looks up the latest config revision.
CONFIG_LOOKUP_S = 1.0

log = logging.getLogger("pathwatch.api")

ChangeKind = Literal["path", "alarm"]


class ApiBackend:
    """Caches fed by NATS plus probe-state storage."""

    def __init__(self, bus: Bus, live: LiveConfig | None = None) -> None:
        self.bus = bus
        self.paths: dict[str, PathState] = {}
        self.alarms: dict[str, Alarm] = {}
        self.fleet_book = FleetBook()
        self.counters = RoleCounters("api", f"api-{socket.gethostname()}", live=live)
        self.dropped = self.counters.dropped
        self.listeners: list[Callable[[ChangeKind, str], None]] = []
        #: Set when the API stops serving: long-lived responses end on it.
        self.closing = asyncio.Event()
        self._probes: KeyValue | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription: Any = None
        self._fleet_subscriptions: list[Any] = []
        self._stop = asyncio.Event()
        #: The first snapshot of the path states has been read (readiness).
        self.loaded = False

    async def start(self, ready_timeout: float = 5.0) -> None:
        self._probes = await self.bus.kv(subjects.KV_PROBES)
        loaded = asyncio.Event()
        restarts = self.counters.restarts
        self._tasks.append(
            start_supervised("api-paths", lambda: self._follow_paths(loaded), self._stop, restarts)
        )
        self._tasks.append(
            start_supervised(
                "api-status",
                lambda: publish_status(self.bus, self.counters, self._stop),
                self._stop,
                restarts,
            )
        )
        self._subscription = await self.bus.js.subscribe(
            subjects.ALARM_ALL,
            stream=subjects.STREAM_ALARMS,
            ordered_consumer=True,
            cb=self._on_alarm,
        )
        self._fleet_subscriptions = [
            await self.bus.nc.subscribe(subjects.STATUS_ALL, cb=self._on_status),
            await self.bus.nc.subscribe(subjects.HEARTBEAT_ALL, cb=self._on_heartbeat),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(loaded.wait(), ready_timeout)

    async def stop(self) -> None:
        self._stop.set()
        for subscription in [self._subscription, *self._fleet_subscriptions]:
            with contextlib.suppress(Exception):
                if subscription is not None:
                    await subscription.unsubscribe()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _follow_paths(self, loaded: asyncio.Event) -> None:
        paths = await self.bus.kv(subjects.KV_PATHS)
        watcher = await paths.watchall()
        try:
            async for entry in watcher:
                if entry is None:
                    self.loaded = True
                    loaded.set()
                    continue
                self._path_entry(entry.key, entry.operation, entry.value)
                if entry.delta == 0:
                    self.loaded = True
                    loaded.set()
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    def _path_entry(self, key: str, operation: str | None, value: bytes | None) -> None:
        if operation in ("DEL", "PURGE") or not value:
            self.paths.pop(key, None)
            self._changed("path", key)
            return
        try:
            state = decode_message(value, PathState)
        except DecodeError as exc:
            self.dropped[f"kv-path:{exc.reason}"] += 1
            return
        self.paths[key] = state
        self._changed("path", key)

    async def _on_alarm(self, msg: Msg) -> None:
        try:
            alarm = decode_message(msg.data, Alarm)
        except DecodeError as exc:
            self.dropped[f"alarm:{exc.reason}"] += 1
            return
        self.alarms.pop(alarm.id, None)
        self.alarms[alarm.id] = alarm
        if len(self.alarms) > MAX_ALARMS:
            # the least recently updated alarm goes first (dicts keep insertion order)
            del self.alarms[next(iter(self.alarms))]
            self.dropped["alarm:evicted"] += 1
        self._changed("alarm", alarm.id)

    async def _on_status(self, msg: Msg) -> None:
        status = decode_status(msg.subject, msg.data, self.dropped)
        if status is not None:
            self.fleet_book.status(status, time.time())

    async def _on_heartbeat(self, msg: Msg) -> None:
        try:
            heartbeat = decode_message(msg.data, AgentHeartbeat)
        except DecodeError as exc:
            self.dropped[f"heartbeat:{exc.reason}"] += 1
            return
        if not subjects.heartbeat_matches(msg.subject, heartbeat.node, heartbeat.agent):
            self.dropped["heartbeat:subject"] += 1
            return
        self.fleet_book.heartbeat(heartbeat, time.time())

    async def fleet(self, name: str) -> FleetReport:
        """Every member against the latest revision of config `name` in KV (when the
        bucket holds one and answers within CONFIG_LOOKUP_S)."""
        return self.fleet_book.report(await self._latest_config(name), time.time())

    async def _latest_config(self, name: str) -> ConfigMark | None:
        try:
            store = await asyncio.wait_for(ConfigStore.open(self.bus), CONFIG_LOOKUP_S)
            latest = await asyncio.wait_for(store.latest(name), CONFIG_LOOKUP_S)
        except (StoreError, DecodeError, TimeoutError, nats.errors.Error) as exc:
            log.debug("latest config %r not known: %r", name, exc)
            return None
        if latest is None:
            return None
        return ConfigMark(digest=latest.record.digest, revision=latest.revision)

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
        except DecodeError as exc:
            self.dropped[f"probe-state:{exc.reason}"] += 1
            return None

    async def delete_probe_state(self, key: str) -> None:
        await self.probes.delete(key)

    async def probe_keys(self, probe: str) -> list[str]:
        """Keys with any record of `probe`'s state (deleted ones included)."""
        return await self.bus.kv_keys(subjects.KV_PROBES, probe)
