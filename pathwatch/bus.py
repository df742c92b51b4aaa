"""The NATS connection and JetStream set-up every pathwatch component shares.

`Bus.connect` reconnects forever, logs each state change and gives up at once when
stop is requested while still connecting (StopRequested); `Bus.ensure`
creates or updates the streams and KV buckets of the wire contract (safe to
call from every process at every start); `Bus.close` drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.aio.client
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from pathwatch.listen import host_port
from schemas import subjects
from schemas.codec import DecodeError, decode_message
from schemas.names import is_subject_safe
from schemas.wire import PathState

log = logging.getLogger("pathwatch.bus")

DAY = 86400.0
#: Bytes nats-py reads from its socket at a time. Its default, 32 KiB, holds one or
#: two measurement batches, so every read paused and resumed the asyncio transport;
#: 1 MiB takes the ~10 % of a consumer's CPU that cost (`pathwatch bench ingest`).
#: nats-py has no connect option for it, only this module constant, which it reads at
#: every connect and read.
READ_BUFFER_BYTES = 1 << 20
nats.aio.client.DEFAULT_BUFFER_SIZE = READ_BUFFER_BYTES
#: Seconds to wait for each entry of a KV snapshot before taking it as complete.
SNAPSHOT_ENTRY_TIMEOUT = 5.0
#: How long `Bus.close` lets subscriptions and publishers drain: short, as every role
#: must stop within 2 s of a signal (the rest is flushed at close).
DRAIN_TIMEOUT_S = 1.0
#: Seconds between connect attempts while NATS cannot be reached.
RECONNECT_WAIT_S = 0.5
#: At most one "still cannot reach NATS" line per this many seconds.
REPEAT_LOG_S = 30.0


@dataclass(frozen=True)
class StreamSpec:
    """Limits of one JetStream stream of the contract."""

    name: str
    subjects: list[str]
    max_age_s: float
    max_bytes: int
    max_msgs: int = -1


STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(subjects.STREAM_EVENTS, [subjects.EVENT_ALL], 30 * DAY, 1 << 30),
    StreamSpec(subjects.STREAM_ALARMS, [subjects.ALARM_ALL], 90 * DAY, 1 << 30),
    StreamSpec(subjects.STREAM_COMMANDS, [subjects.CMD_ALL], 7 * DAY, 256 << 20),
    StreamSpec(subjects.STREAM_DEAD_LETTERS, [subjects.DEADLETTER_ALL], 30 * DAY, 64 << 20),
)


@dataclass(frozen=True)
class BusOptions:
    """How to reach NATS: a server list and optional credentials / TLS."""

    servers: list[str]
    name: str = "pathwatch"
    credentials: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    replicas: int = 1
    connect_timeout: float = 5.0
    on_reconnect: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @staticmethod
    def from_url(url: str, **kwargs: Any) -> BusOptions:
        return BusOptions(servers=[s.strip() for s in url.split(",") if s.strip()], **kwargs)


class StopRequested(Exception):
    """Stop was requested while still connecting to NATS: the caller ends quietly."""


class _RepeatedFailures:
    """Logs the first failed connect attempt at once, then at most one summary every
    REPEAT_LOG_S (nats-py retries twice a second while NATS is unreachable)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.logged_at = 0.0

    def report(self, exc: Exception) -> None:
        self.count += 1
        now = time.monotonic()
        if self.count == 1:
            log.warning(
                "nats %s: cannot reach NATS (%s); retrying every %g s",
                self.name,
                exc,
                RECONNECT_WAIT_S,
            )
        elif now - self.logged_at >= REPEAT_LOG_S:
            log.warning(
                "nats %s: still cannot reach NATS (%d attempts; %s)", self.name, self.count, exc
            )
        else:
            return
        self.logged_at = now

    def clear(self) -> None:
        self.count = 0


def _server_of(nc: Client) -> str:
    """The server `nc` is connected to, as scheme://host:port (never its credentials)."""
    url = nc.connected_url
    if url is None or url.hostname is None:
        return "-"
    return f"{url.scheme}://{host_port(url.hostname, url.port)}"


def _auth_and_tls(options: BusOptions) -> dict[str, Any]:
    """nats.connect keyword arguments for the credentials and TLS of `options`."""
    kwargs: dict[str, Any] = {}
    if options.tls_ca or options.tls_cert:
        tls = ssl.create_default_context(cafile=options.tls_ca)
        if options.tls_cert:
            tls.load_cert_chain(options.tls_cert, options.tls_key)
        kwargs["tls"] = tls
    if options.credentials:
        kwargs["user_credentials"] = options.credentials
    if options.user:
        kwargs["user"] = options.user
        kwargs["password"] = options.password
    if options.token:
        kwargs["token"] = options.token
    return kwargs


class Bus:
    """An open NATS connection with its JetStream context and the contract's KV buckets."""

    def __init__(self, nc: Client, options: BusOptions) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.options = options
        self._kv: dict[str, KeyValue] = {}
        #: Set by `close`, so the disconnect it causes is not reported as a fault.
        self.closing = False
        self.reconnect_callbacks: list[Callable[[], Awaitable[None]]] = list(options.on_reconnect)

    @classmethod
    async def connect(cls, options: BusOptions, stop: asyncio.Event | None = None) -> Bus:
        """Connect, retrying the first connection too; later reconnects are endless.

        With `stop`, a stop while still connecting (NATS unreachable) ends the attempt at
        once and raises StopRequested, so every role can be stopped in this phase too.
        """
        if stop is None:
            return await cls._connect(options)
        if stop.is_set():
            raise StopRequested
        connecting = asyncio.create_task(cls._connect(options), name=f"connect-{options.name}")
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not connecting.done():
                connecting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await connecting
        if connecting.cancelled():
            raise StopRequested
        return connecting.result()

    @classmethod
    async def _connect(cls, options: BusOptions) -> Bus:
        holder: dict[str, Bus] = {}
        failures = _RepeatedFailures(options.name)

        async def error_cb(exc: Exception) -> None:
            if isinstance(exc, OSError | TimeoutError):
                failures.report(exc)  # connect attempts: once, then a summary now and then
            else:
                log.warning("nats %s: %s", options.name, exc)

        async def disconnected_cb() -> None:
            bus = holder.get("bus")
            if bus is not None and bus.closing:
                return
            log.warning("nats %s: disconnected", options.name)

        async def reconnected_cb() -> None:
            failures.clear()
            log.info("nats %s: reconnected to %s", options.name, _server_of(holder["bus"].nc))
            for callback in holder["bus"].reconnect_callbacks:
                try:
                    await callback()
                except Exception:
                    log.exception("reconnect callback failed")

        async def closed_cb() -> None:
            log.debug("nats %s: closed", options.name)

        nc = await nats.connect(
            servers=options.servers,
            name=options.name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=RECONNECT_WAIT_S,
            connect_timeout=options.connect_timeout,
            allow_reconnect=True,
            error_cb=error_cb,
            disconnected_cb=disconnected_cb,
            reconnected_cb=reconnected_cb,
            closed_cb=closed_cb,
            **_auth_and_tls(options),
        )
        failures.clear()
        log.info("nats %s: connected to %s", options.name, _server_of(nc))
        bus = cls(nc, options)
        holder["bus"] = bus
        return bus

    async def ensure(self) -> None:
        """Create or update the contract's streams and KV buckets (idempotent)."""
        replicas = self.options.replicas
        for spec in STREAMS:
            config = StreamConfig(
                name=spec.name,
                subjects=spec.subjects,
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_age=spec.max_age_s,
                max_bytes=spec.max_bytes,
                max_msgs=spec.max_msgs,
                discard=DiscardPolicy.OLD,
                num_replicas=replicas,
                duplicate_window=120.0,
            )
            try:
                await self.js.stream_info(spec.name)
            except NotFoundError:
                await self.js.add_stream(config)
            else:
                await self.js.update_stream(config)
        await self._ensure_kv(subjects.KV_PATHS, history=5, ttl=0)
        await self._ensure_kv(subjects.KV_PROBES, history=1, ttl=0)
        await self._ensure_kv(subjects.KV_LEASES, history=1, ttl=0)

    async def try_ensure(self) -> bool:
        """`ensure` for roles that may lack the right to manage streams (aggregator,
        router, API on a secured cluster): on a refusal or time-out, log and go on,
        trusting the enforcer or an admin to have set JetStream up. True when done."""
        try:
            await self.ensure()
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning(
                "could not set up JetStream streams and buckets (%s); assuming the enforcer"
                " or an admin has (this role may lack the permission)",
                exc.__class__.__name__,
            )
            return False
        return True

    async def _ensure_kv(self, bucket: str, history: int, ttl: float) -> KeyValue:
        try:
            kv = await self.js.key_value(bucket)
        except BucketNotFoundError:
            kv = await self.js.create_key_value(
                KeyValueConfig(
                    bucket=bucket,
                    history=history,
                    ttl=ttl or None,
                    storage=StorageType.FILE,
                    replicas=self.options.replicas,
                )
            )
        self._kv[bucket] = kv
        return kv

    async def kv(self, bucket: str) -> KeyValue:
        """The KV bucket `bucket` (created by `ensure`)."""
        kv = self._kv.get(bucket)
        if kv is None:
            kv = await self.js.key_value(bucket)
            self._kv[bucket] = kv
        return kv

    async def kv_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """The keys of KV `bucket` (those under `prefix.` when given) that have any
        record, deleted ones included: callers read each key and skip deleted ones.

        One stream-info request, answered by the server from one snapshot, instead of
        nats-py's `KeyValue.keys()`: its watcher can end the replay early and return
        only some of the keys (nats-io/nats.py#842, still open in 2.16). The server
        lists up to 100,000 subjects in one answer, far above the routes and probes
        of a deployment.
        """
        if prefix and not is_subject_safe(prefix):
            raise ValueError(f"key prefix {prefix!r} must match [A-Za-z0-9_-]+")
        subject_prefix = f"$KV.{bucket}."
        info = await self.js.stream_info(
            f"KV_{bucket}", subjects_filter=subject_prefix + (f"{prefix}.>" if prefix else ">")
        )
        subjects = info.state.subjects or {}
        return sorted(subject[len(subject_prefix) :] for subject in subjects)

    async def close(self) -> None:
        """Drain subscriptions and close; safe to call twice, and quick when the
        server is gone (nothing to drain then: the client is reconnecting)."""
        if self.nc.is_closed:
            return
        self.closing = True
        try:
            if self.nc.is_connected:
                await asyncio.wait_for(self.nc.drain(), timeout=DRAIN_TIMEOUT_S)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            log.debug("nats %s: drain at close: %r", self.options.name, exc)
        finally:
            if not self.nc.is_closed:
                try:
                    await self.nc.close()
                except (OSError, nats.errors.Error) as exc:
                    # nats-py flushes what it still holds onto a dead socket and raises;
                    # the client is closed by then (no more reconnects)
                    log.debug("nats %s: close: %r", self.options.name, exc)


class PathStateFollower:
    """Holds the latest PathState of every key of KV `pathwatch-paths` (or of `keys`).

    `resync()` replaces everything with a fresh snapshot and restarts the watch
    (raising when NATS cannot be reached); `on_change(key)` is called for every
    change after that (key None: a whole new snapshot); `on_broken()` when the
    watch fails and a resync is needed. Malformed values are counted in
    `malformed` by reason (`kv-path:<reason>`) and dropped; the previous
    state of that key is kept. Routers and healers reconcile from it.
    """

    def __init__(
        self,
        bus: Bus,
        on_change: Callable[[str | None], None],
        on_broken: Callable[[], None],
        malformed: Counter[str],
        keys: str = ">",
        name: str = "kv",
    ) -> None:
        self._bus = bus
        self._on_change = on_change
        self._on_broken = on_broken
        self._malformed = malformed
        self._keys = keys
        self._name = name
        self._watcher: KeyValue.KeyWatcher | None = None
        self._task: asyncio.Task[None] | None = None
        self.states: dict[str, PathState] = {}

    @property
    def watching(self) -> bool:
        return self._task is not None and not self._task.done()

    async def resync(self) -> None:
        """Read the whole bucket (or the keys), then follow it."""
        await self.stop()
        kv = await self._bus.kv(subjects.KV_PATHS)
        watcher = await kv.watch(self._keys)
        self._watcher = watcher
        states: dict[str, PathState] = {}
        while True:
            entry = await watcher.updates(timeout=SNAPSHOT_ENTRY_TIMEOUT)  # type: ignore[no-untyped-call]
            if entry is None:
                break
            self._fold(states, entry)
        self.states = states
        self._on_change(None)
        self._task = asyncio.create_task(self._follow(watcher), name=f"{self._name}-kv-watch")

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        try:
            async for entry in watcher:
                if entry is None:
                    continue
                self._fold(self.states, entry)
                self._on_change(entry.key)
        except Exception:
            log.exception("%s: watch of %s failed; resyncing", self._name, subjects.KV_PATHS)
        self._on_broken()

    def _fold(self, states: dict[str, PathState], entry: KeyValue.Entry) -> None:
        if entry.operation in (KV_DEL, KV_PURGE):
            states.pop(entry.key, None)
            return
        try:
            states[entry.key] = decode_message(entry.value or b"", PathState)
        except DecodeError as exc:
            self._malformed[f"kv-path:{exc.reason}"] += 1
            log.debug("%s: dropping malformed PathState %s: %s", self._name, entry.key, exc)

    async def stop(self) -> None:
        task, self._task = self._task, None
        watcher, self._watcher = self._watcher, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if watcher is not None:
            with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                await watcher.stop()  # type: ignore[no-untyped-call]
