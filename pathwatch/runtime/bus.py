"""The NATS connection and JetStream set-up every pathwatch component shares.

`Bus.connect` reconnects forever, logs each state change and gives up at once when
stop is requested while still connecting (StopRequested); `Bus.ensure`
creates or updates the streams and KV buckets of the wire contract (the
enforcer and `pathwatch up`, at every start); `Bus.try_ensure` only looks up
what a role uses and creates what is missing, never updating anything, so a
role under its least-privilege user asks for nothing it may not do; `Bus.close`
drains. Every connection takes its replies on its own inbox prefix,
`_INBOX_<user>` (`inbox_prefix`), so a user may be allowed to subscribe only there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

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

from pathwatch.runtime.listen import host_port
from schemas import subjects
from schemas.codec import DecodeError, decode_message
from schemas.config import NatsConfig
from schemas.names import is_subject_safe, subject_token
from schemas.wire import PathState

log = logging.getLogger("pathwatch.bus")

DAY = 86400.0
#: Bytes nats-py reads from its socket at a time. Its default, 32 KiB, holds one or
#: two measurement batches, so every read paused and resumed the asyncio transport;
#: 1 MiB takes the ~10 % of a consumer's CPU that cost (`pathwatch bench ingest`).
#: nats-py has no connect option for it, only a module constant that it reads at every
#: connect and read: `widen_read_buffer` sets it, right before `Bus` connects.
READ_BUFFER_BYTES = 1 << 20
#: Seconds to wait for each entry of a KV snapshot before taking it as complete.
SNAPSHOT_ENTRY_TIMEOUT = 5.0
#: How long `Bus.close` lets subscriptions and publishers drain: short, as every role
#: must stop within 2 s of a signal (the rest is flushed at close).
DRAIN_TIMEOUT_S = 1.0

#: How long the clean-up of a client whose first connection failed may take.
CLOSE_UNCONNECTED_S = 0.2
#: Seconds between connect attempts while NATS cannot be reached.
RECONNECT_WAIT_S = 0.5
#: At most one "still cannot reach NATS" line per this many seconds.
REPEAT_LOG_S = 30.0


def widen_read_buffer() -> None:
    """Have nats-py read READ_BUFFER_BYTES at a time from now on (in this process).

    Called by `Bus` before it connects, never at import: only processes that
    connect through `Bus` change nats-py's setting.
    """
    nats.aio.client.DEFAULT_BUFFER_SIZE = READ_BUFFER_BYTES


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
class KvSpec:
    """History and time-to-live of one KV bucket of the contract."""

    bucket: str
    history: int
    ttl_s: float = 0.0


BUCKETS: tuple[KvSpec, ...] = (
    KvSpec(subjects.KV_PATHS, history=5),
    KvSpec(subjects.KV_PROBES, history=1),
    KvSpec(subjects.KV_LEASES, history=1),
)
ALL_STREAMS = tuple(spec.name for spec in STREAMS)
ALL_BUCKETS = tuple(spec.bucket for spec in BUCKETS)


def inbox_prefix(options: BusOptions) -> str:
    """The inbox prefix of a connection: `options.inbox_prefix`, else `_INBOX_<user>` (its
    replies, pull deliveries and watch deliveries arrive there, and accounts.conf lets
    each user subscribe only there) with the user of the options or of the first server
    URL (`nats://user:password@host`), else nats-py's `_INBOX`."""
    if options.inbox_prefix:
        return options.inbox_prefix
    user = options.nats.user or next(
        (urlsplit(url if "://" in url else f"nats://{url}").username for url in options.servers),
        None,
    )
    return f"_INBOX_{subject_token(user)}" if user else "_INBOX"


@dataclass(frozen=True)
class BusOptions:
    """How to reach NATS: the servers dialled, and the `nats` config section for the
    credentials, TLS and replicas (its `url` is what `servers` was read from)."""

    servers: list[str]
    name: str = "pathwatch"
    nats: NatsConfig = field(default_factory=NatsConfig)
    connect_timeout: float = 5.0
    #: Replies arrive under this prefix (default: see `inbox_prefix`).
    inbox_prefix: str | None = None
    on_reconnect: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @staticmethod
    def from_url(
        url: str,
        *,
        name: str = "pathwatch",
        connect_timeout: float = 5.0,
        inbox_prefix: str | None = None,
        **nats: Any,
    ) -> BusOptions:
        """Options for the comma-separated servers of `url`; `nats` are keys of the
        `nats` config section (credentials, user, password, token, tls_*, replicas)."""
        return BusOptions(
            servers=server_list(url),
            name=name,
            nats=NatsConfig(url=url, **nats),
            connect_timeout=connect_timeout,
            inbox_prefix=inbox_prefix,
        )


def server_list(url: str) -> list[str]:
    """The servers of a comma-separated `nats.url`."""
    return [server.strip() for server in url.split(",") if server.strip()]


class StopRequested(Exception):
    """Stop was requested while still connecting to NATS: the caller ends quietly."""


class NatsRefused(Exception):
    """The first connection failed in a way retrying cannot mend (the server's TLS
    certificate is not trusted, or the server refused ours): the message names the
    servers and the problem, and the role exits with it."""


def tls_refusal(options: BusOptions, exc: ssl.SSLError) -> NatsRefused | None:
    """NatsRefused for a TLS failure about certificates, None for any other (a server
    that is restarting may break off a handshake: that is worth retrying)."""
    servers = ", ".join(_without_credentials(url) for url in options.servers)
    if isinstance(exc, ssl.SSLCertVerificationError):
        trusted = f"tls-ca {options.nats.tls_ca}" if options.nats.tls_ca else "the system's CAs"
        problem = (
            f"its certificate is not trusted ({exc.verify_message}; checked against {trusted})"
        )
    elif any(word in (exc.reason or "").upper() for word in ("CERTIFICATE", "UNKNOWN_CA")):
        problem = f"it refused this client's certificate ({exc.reason})"
    else:
        return None
    return NatsRefused(f"TLS to NATS server {servers}: {problem}")


def _without_credentials(url: str) -> str:
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    return f"{parts.scheme}://{host_port(parts.hostname or '', parts.port or 4222)}"


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
    nats = options.nats
    if nats.tls_ca or nats.tls_cert:
        tls = ssl.create_default_context(cafile=nats.tls_ca)
        if nats.tls_cert:
            tls.load_cert_chain(nats.tls_cert, nats.tls_key)
        kwargs["tls"] = tls
    if nats.credentials:
        kwargs["user_credentials"] = nats.credentials
    if nats.user:
        kwargs["user"] = nats.user
        kwargs["password"] = nats.password
    if nats.token:
        kwargs["token"] = nats.token
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
            if "bus" not in holder and isinstance(exc, ssl.SSLError):
                refused = tls_refusal(options, exc)
                if refused is not None:
                    raise refused  # out of the first connect: retrying cannot help
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

        settings: dict[str, Any] = {
            "servers": options.servers,
            "name": options.name,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": RECONNECT_WAIT_S,
            "connect_timeout": options.connect_timeout,
            "allow_reconnect": True,
            "error_cb": error_cb,
            "disconnected_cb": disconnected_cb,
            "reconnected_cb": reconnected_cb,
            "closed_cb": closed_cb,
            "inbox_prefix": inbox_prefix(options),
            **_auth_and_tls(options),
        }
        nc = Client()
        widen_read_buffer()
        try:
            await nc.connect(**settings)
        except BaseException:
            # a client that never connected holds a socket (its close can wait forever)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), CLOSE_UNCONNECTED_S)
            raise
        failures.clear()
        log.info("nats %s: connected to %s", options.name, _server_of(nc))
        bus = cls(nc, options)
        holder["bus"] = bus
        return bus

    async def ensure(self) -> None:
        """Create or update the contract's streams and KV buckets (idempotent)."""
        for spec in STREAMS:
            config = self._stream_config(spec)
            try:
                await self.js.stream_info(spec.name)
            except NotFoundError:
                await self.js.add_stream(config)
            else:
                await self.js.update_stream(config)
        for kv_spec in BUCKETS:
            await self._ensure_kv(kv_spec)

    async def try_ensure(
        self, streams: Collection[str] = ALL_STREAMS, buckets: Collection[str] = ALL_BUCKETS
    ) -> bool:
        """For roles that do not own JetStream (aggregator, router, API, CLI): look up the
        `streams` and `buckets` the role uses and create only those missing, never
        updating one, so under its own user a role asks for nothing it may not do once
        the enforcer (or an admin) has set JetStream up. A refusal or time-out is logged
        and the role goes on. True when everything is in place."""
        try:
            for spec in STREAMS:
                if spec.name in streams:
                    try:
                        await self.js.stream_info(spec.name)
                    except NotFoundError:
                        await self.js.add_stream(self._stream_config(spec))
            for kv_spec in BUCKETS:
                if kv_spec.bucket in buckets:
                    await self._ensure_kv(kv_spec)
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning(
                "could not set up JetStream streams and buckets (%s); assuming the enforcer"
                " or an admin will (this role may lack the permission)",
                exc.__class__.__name__,
            )
            return False
        return True

    def _stream_config(self, spec: StreamSpec) -> StreamConfig:
        return StreamConfig(
            name=spec.name,
            subjects=spec.subjects,
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=spec.max_age_s,
            max_bytes=spec.max_bytes,
            max_msgs=spec.max_msgs,
            discard=DiscardPolicy.OLD,
            num_replicas=self.options.nats.replicas,
            duplicate_window=120.0,
        )

    async def _ensure_kv(self, spec: KvSpec) -> KeyValue:
        try:
            kv = await self.js.key_value(spec.bucket)
        except BucketNotFoundError:
            kv = await self.js.create_key_value(
                KeyValueConfig(
                    bucket=spec.bucket,
                    history=spec.history,
                    ttl=spec.ttl_s or None,
                    storage=StorageType.FILE,
                    replicas=self.options.nats.replicas,
                )
            )
        self._kv[spec.bucket] = kv
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
