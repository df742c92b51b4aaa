"""Where a role's config comes from, one revision after another (docs/fleet-config.md).

A `ConfigSource` yields successive `Revision`s, each checked as `pathwatch config
check` checks a file: `FileSource` reads a file at start and again on SIGHUP;
`KvSource` starts from the newest good revision in KV `pathwatch-config` and follows
every new one (SIGHUP, or a NATS reconnect, reads the latest again). A revision that
fails the check is refused: one log record with every error, `config:invalid` counted
in the status of every role that follows the source, and nothing changes. A good one
is offered to each role's `LiveConfig`; a role that cannot apply it refuses it the same
way (`config:cannot-apply`) and keeps running on its last good revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import nats.errors
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from pathwatch.runtime.aio import wait_any
from pathwatch.runtime.bus import Bus, StopRequested
from pathwatch.runtime.configfile import ConfigError, LoadedConfig, load_config
from pathwatch.runtime.configstore import ConfigStore, StoreError, decode_entry
from schemas.codec import DecodeError
from schemas.config import PathwatchConfig
from schemas.wire import ConfigMark

log = logging.getLogger("pathwatch.config")

#: Seconds between looks at KV while no good config is there yet, and before a
#: broken watch is started again.
RETRY_S = 1.0

#: A role's way to take a new config: return when applied, raise to refuse it.
Apply = Callable[[PathwatchConfig], Awaitable[None] | None]


@dataclass(frozen=True)
class Revision:
    """A checked config and where it came from (`kv_revision` 0: a file)."""

    loaded: LoadedConfig
    kv_revision: int = 0

    @property
    def config(self) -> PathwatchConfig:
        return self.loaded.config

    @property
    def mark(self) -> ConfigMark:
        return ConfigMark(digest=self.loaded.digest, revision=self.kv_revision)

    def describe(self) -> str:
        where = f"revision {self.kv_revision}" if self.kv_revision else self.loaded.source
        return f"{where} (digest {self.loaded.digest or '-'})"


def _value_at(config: PathwatchConfig, key: str) -> object:
    value: object = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def changed_keys(old: PathwatchConfig, new: PathwatchConfig, keys: tuple[str, ...]) -> list[str]:
    """Those of `keys` (dotted attribute paths, `api.listen`) whose value differs, as
    the config file spells them (`api.listen`, `store.path`)."""
    return [key.replace("_", "-") for key in keys if _value_at(old, key) != _value_at(new, key)]


class LiveConfig:
    """The revision one role runs, the revisions it refused, and how it applies one.

    The role gives its `apply` (`on_change`): it takes the new config, or raises to
    refuse it. `start_only` keys (dotted paths) are read only when the role starts: a
    revision that changes them is applied for the rest, with a warning that they wait
    for a restart. `changed` is set whenever the revision or the refusals change, so
    the role's status goes out at once.
    """

    def __init__(self, role: str, first: Revision, start_only: tuple[str, ...] = ()) -> None:
        self.role = role
        self.current = first
        self.start_only = start_only
        self.refused: Counter[str] = Counter()
        self.changed = asyncio.Event()
        self._apply: Apply | None = None

    @classmethod
    def fixed(cls, role: str, config: PathwatchConfig) -> LiveConfig:
        """A role given a bare config (tests, benches): no digest, nothing follows."""
        return cls(role, Revision(LoadedConfig(config, "<given>", "")))

    @property
    def config(self) -> PathwatchConfig:
        return self.current.config

    def on_change(self, apply: Apply) -> None:
        self._apply = apply

    async def offer(self, revision: Revision) -> bool:
        """Apply `revision` (True), or refuse it and keep the current one (False)."""
        if revision.loaded.digest == self.current.loaded.digest:
            moved = revision.kv_revision != self.current.kv_revision
            self.current = revision  # the same text: only the revision number moves
            if moved:
                self.changed.set()
            return True
        try:
            if self._apply is not None:
                applied = self._apply(revision.config)
                if inspect.isawaitable(applied):
                    await applied
        except Exception as exc:
            self.refuse("cannot-apply", f"cannot apply {revision.describe()}: {exc}")
            return False
        waiting = changed_keys(self.current.config, revision.config, self.start_only)
        self.current = revision
        self.changed.set()
        log.info("%s: now running config %s", self.role, revision.describe())
        if waiting:
            log.warning(
                "%s: %s changed; this role takes %s at its next restart",
                self.role,
                ", ".join(waiting),
                "it" if len(waiting) == 1 else "them",
            )
        return True

    def refuse(self, reason: str, why: str) -> None:
        """Count a refused revision (`config:<reason>` in the role's status) and log why."""
        self.refused[reason] += 1
        self.changed.set()
        log.error(
            "%s: config refused, still running %s: %s", self.role, self.current.describe(), why
        )

    def counted(self) -> dict[str, int]:
        """The refusals as drop counters of the role's status (`config:<reason>`)."""
        return {f"config:{reason}": count for reason, count in self.refused.items()}


class ConfigSource:
    """Successive checked revisions for the roles that follow it (`live`)."""

    #: Keys every role following this source reads only at start: the connection it
    #: has (a role following KV never uses the pushed `nats:`, only its bootstrap's).
    start_only: tuple[str, ...] = ("nats",)

    def __init__(self, first: Revision) -> None:
        self.current = first
        self.lives: list[LiveConfig] = []
        #: bad revisions refused before any role followed (at start)
        self.invalid_before = 0
        self._wake = asyncio.Event()

    def live(self, role: str, start_only: tuple[str, ...] = ()) -> LiveConfig:
        """A follower for `role`, starting on the current revision."""
        live = LiveConfig(role, self.current, (*self.start_only, *start_only))
        if self.invalid_before:
            live.refused["invalid"] = self.invalid_before
        self.lives.append(live)
        return live

    def reload(self) -> None:
        """Read the config again now (SIGHUP)."""
        log.info("SIGHUP: reading the config again")
        self._wake.set()

    def listen_for_hup(self) -> None:
        """Make SIGHUP call `reload` (instead of the default: logged and ignored)."""
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)

    async def offer(self, revision: Revision) -> None:
        self.current = revision
        for live in self.lives:
            await live.offer(revision)

    def refuse_invalid(self, why: str) -> None:
        """A revision that failed the check: logged once, counted by every role."""
        log.error("config refused, every role keeps its running config: %s", why)
        if not self.lives:
            self.invalid_before += 1
        for live in self.lives:
            live.refused["invalid"] += 1
            live.changed.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the source until `stop` is set (this base one never changes)."""
        await stop.wait()

    async def _woken(self, stop: asyncio.Event) -> bool:
        """Wait for a reload or for `stop`; True for a reload."""
        await wait_any((stop, self._wake), None)
        self._wake.clear()
        return not stop.is_set()


class FileSource(ConfigSource):
    """A config file (None: the embedded default), read again on every SIGHUP."""

    def __init__(self, path: Path | None, first: LoadedConfig) -> None:
        super().__init__(Revision(first))
        self.path = path

    async def run(self, stop: asyncio.Event) -> None:
        while await self._woken(stop):
            try:
                loaded = load_config(self.path)
            except ConfigError as exc:
                self.refuse_invalid(str(exc))
                continue
            for warning in loaded.warnings:
                log.warning("%s", warning)
            await self.offer(Revision(loaded))


class KvSource(ConfigSource):
    """Config `name` in KV `pathwatch-config`, followed revision by revision."""

    start_only = ()

    def __init__(self, bus: Bus, store: ConfigStore, name: str, first: Revision, seen: int):
        super().__init__(first)
        self.bus = bus
        self.store = store
        self.name = name
        #: the newest revision looked at (good or not): older ones are never taken again
        self.seen = seen
        bus.reconnect_callbacks.append(self._reconnected)

    @classmethod
    async def open(cls, bus: Bus, name: str, stop: asyncio.Event) -> KvSource:
        """Wait until KV holds a good revision of `name` (saying so once), then start from
        the newest good one. StopRequested when `stop` comes first."""
        told: set[int] = set()
        waiting_said = False
        while not stop.is_set():
            try:
                store = await ConfigStore.open(bus)
                found = await _newest_good(store, name, told)
            except (StoreError, nats.errors.Error, TimeoutError) as exc:
                why = str(exc) or exc.__class__.__name__
            else:
                if found is not None:
                    revision, seen = found
                    source = cls(bus, store, name, revision, seen)
                    source.invalid_before = len(told)
                    log.info("config %r: starting from %s", name, revision.describe())
                    return source
                why = f"no good revision of config {name!r} yet"
            if not waiting_said:
                log.warning(
                    "waiting for a config in KV (%s); push one with `pathwatch config push`", why
                )
                waiting_said = True
            await wait_any((stop,), RETRY_S)
        raise StopRequested(f"a good revision of config {name!r} was found in KV")

    async def _reconnected(self) -> None:
        self._wake.set()  # the watch may not have survived: start it again

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                self._wake.clear()
                following = asyncio.create_task(self._follow(), name=f"config-watch-{self.name}")
                await wait_any((stop, self._wake), None, following)
                if not following.done():
                    following.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await following
                    continue
                error = following.exception()
                log.warning("config %r: watch of KV ended (%r); again soon", self.name, error)
                await wait_any((stop,), RETRY_S)
        finally:
            with contextlib.suppress(ValueError):
                self.bus.reconnect_callbacks.remove(self._reconnected)

    async def _follow(self) -> None:
        """Take every revision newer than `seen` (a fresh watch gives the latest first)."""
        watcher: KeyValue.KeyWatcher = await self.store.kv.watch(self.name)
        try:
            async for entry in _entries(watcher):
                await self.take(entry.revision or 0, entry.operation, entry.value)
        finally:
            with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def take(self, revision: int, operation: str | None, value: bytes | None) -> None:
        """One KV record of the config: offered when good, refused when not."""
        if revision <= self.seen:
            return
        self.seen = revision
        if operation in (KV_DEL, KV_PURGE):
            log.warning(
                "config %r was deleted from KV at revision %d; still running %s",
                self.name,
                revision,
                self.current.describe(),
            )
            return
        checked = _check(revision, value)
        if isinstance(checked, str):
            self.refuse_invalid(checked)
        else:
            await self.offer(checked)


async def _entries(watcher: KeyValue.KeyWatcher) -> AsyncIterator[KeyValue.Entry]:
    async for entry in watcher:
        if entry is not None:
            yield entry


def _check(revision: int, value: bytes | None) -> Revision | str:
    """The revision checked, or why it is refused."""
    try:
        stored = decode_entry(revision, value)
        return Revision(stored.load(), revision)
    except DecodeError as exc:
        return f"revision {revision} is not a config record ({exc})"
    except ConfigError as exc:
        return str(exc)


async def _newest_good(
    store: ConfigStore, name: str, told: set[int]
) -> tuple[Revision, int] | None:
    """The newest revision of `name` that passes the check, and the newest revision
    there is; the bad ones newer than it are logged once each (their numbers in `told`)."""
    latest = await store.latest_entry(name)
    if latest is None:
        return None
    newest = latest[0]
    checked = _check(*latest)
    if not isinstance(checked, str):
        return checked, newest
    entries = [entry for entry in await store.entries(name) if not entry.deleted]
    for entry in reversed(entries):
        checked = _check(entry.revision, entry.value)
        if not isinstance(checked, str):
            return checked, newest
        if entry.revision not in told:
            told.add(entry.revision)
            log.error("config refused at start: %s", checked)
    return None


__all__ = [
    "ConfigSource",
    "FileSource",
    "KvSource",
    "LiveConfig",
    "Revision",
    "changed_keys",
]
