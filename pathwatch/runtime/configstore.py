"""The fleet's configs in JetStream KV `pathwatch-config`: one key per config name, each
revision a `ConfigRecord` holding the text as written, its digest and who pushed it.

`pathwatch config push` is the one writer and the one that creates the bucket (an
administrator's right on a secured cluster); roles only read it. The bucket keeps the
last `HISTORY` revisions of each config (the most a NATS KV bucket keeps). Revisions
are the bucket's own sequence numbers: they increase with every push of any config. A
rollback is a push of an old revision's text as a new revision, so the history stays
one straight line and every role moves forward to it as to any other push.
"""

from __future__ import annotations

import asyncio
import getpass
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import (
    BucketNotFoundError,
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
    NotFoundError,
)
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configfile import LoadedConfig, parse_config
from schemas import subjects
from schemas.codec import DecodeError, decode_message, encode
from schemas.limits import MAX_LABEL_CHARS
from schemas.wire import ConfigRecord

#: Revisions kept per config (NATS KV keeps at most 64 per key).
HISTORY = 64
#: The config name (KV key) used when none is given.
DEFAULT_NAME = "pathwatch"
#: Seconds to wait for the history of one config to be read.
HISTORY_TIMEOUT_S = 10.0


class StoreError(Exception):
    """The store cannot do what was asked; the message says why, for the operator."""


@dataclass(frozen=True)
class Entry:
    """One record of a config as stored: its revision, whether it is a delete, its value."""

    revision: int
    deleted: bool
    value: bytes | None


@dataclass(frozen=True)
class StoredConfig:
    """One revision as read back: its KV revision and its record."""

    revision: int
    record: ConfigRecord

    @property
    def label(self) -> str:
        """The name config problems are reported under: `kv:<name>@<revision>/<file>`, the
        file's own name last so its suffix still tells YAML from TOML."""
        file = Path(self.record.source).name or f"config.{self.record.format}"
        if not file.endswith(f".{self.record.format}"):
            file = f"{file}.{self.record.format}"
        return f"kv:{self.record.name}@{self.revision}/{file}"

    def load(self) -> LoadedConfig:
        """The checked config of this revision (ConfigError with every problem)."""
        return parse_config(self.record.text, self.label)


def record_for(
    loaded: LoadedConfig,
    text: str,
    *,
    name: str,
    rollback_of: int | None = None,
    comment: str = "",
) -> ConfigRecord:
    """The record of a checked config's text, stamped with who pushes it and when."""
    source = loaded.source
    return ConfigRecord(
        name=name,
        text=text,
        format="toml" if source.endswith(".toml") else "yaml",
        digest=loaded.digest,
        source=source[-MAX_LABEL_CHARS:],
        pushed_by=f"{getpass.getuser()}@{socket.gethostname()}"[:MAX_LABEL_CHARS],
        pushed_at=time.time(),
        rollback_of=rollback_of,
        comment=comment[:MAX_LABEL_CHARS],
    )


def decode_entry(revision: int, value: bytes | None) -> StoredConfig:
    """A KV entry's value as a StoredConfig; DecodeError (bounded decode) when it is not
    a ConfigRecord."""
    return StoredConfig(revision, decode_message(value or b"", ConfigRecord))


class ConfigStore:
    """The `pathwatch-config` bucket of one NATS connection."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, bus: Bus, *, create: bool = False) -> ConfigStore:
        """The bucket; with `create`, made when missing (StoreError when it is missing
        and not to be created)."""
        try:
            return cls(await bus.js.key_value(subjects.KV_CONFIG))
        except BucketNotFoundError:
            if not create:
                raise StoreError(
                    f"no config has been pushed yet (KV bucket {subjects.KV_CONFIG} is missing)"
                ) from None
        kv = await bus.js.create_key_value(
            KeyValueConfig(
                bucket=subjects.KV_CONFIG,
                history=HISTORY,
                storage=StorageType.FILE,
                replicas=bus.options.nats.replicas,
            )
        )
        return cls(kv)

    async def latest_entry(self, name: str) -> tuple[int, bytes] | None:
        """The newest revision of `name` and its raw value (None: never pushed, or deleted)."""
        try:
            entry = await self.kv.get(name)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        return entry.revision or 0, entry.value or b""

    async def latest(self, name: str) -> StoredConfig | None:
        """The newest revision of `name` (None: never pushed, or deleted); DecodeError
        when it is not a ConfigRecord."""
        found = await self.latest_entry(name)
        return None if found is None else decode_entry(*found)

    async def at(self, name: str, revision: int) -> StoredConfig:
        """Revision `revision` of `name`; StoreError when the bucket does not hold it."""
        try:
            entry = await self.kv.get(name, revision=revision)
        except (KeyNotFoundError, KeyDeletedError, NotFoundError):
            raise StoreError(
                f"config {name!r} has no revision {revision} (see `pathwatch config history`)"
            ) from None
        return decode_entry(revision, entry.value)

    async def entries(self, name: str) -> list[Entry]:
        """Every kept record of `name`, oldest first, as stored (deletes included)."""
        try:
            found = await asyncio.wait_for(self.kv.history(name), HISTORY_TIMEOUT_S)
        except NoKeysError:
            return []
        return [Entry(e.revision or 0, e.operation in (KV_DEL, KV_PURGE), e.value) for e in found]

    async def history(self, name: str) -> list[StoredConfig | tuple[int, str]]:
        """Every kept revision of `name`, oldest first; a revision that is not a readable
        ConfigRecord (or a delete) comes as (revision, why)."""
        history: list[StoredConfig | tuple[int, str]] = []
        for entry in await self.entries(name):
            if entry.deleted:
                history.append((entry.revision, "deleted"))
                continue
            try:
                history.append(decode_entry(entry.revision, entry.value))
            except DecodeError as exc:
                history.append((entry.revision, f"not a config record ({exc.reason})"))
        return history

    async def push(self, record: ConfigRecord, after: int | None) -> int:
        """Store `record` as the next revision of its config; `after` is the revision the
        pusher saw as the latest (None: none), so two pushes at once cannot both land on
        the same predecessor (StoreError for the later one). Returns the new revision."""
        try:
            if after is None:
                return await self.kv.create(record.name, encode(record))
            return await self.kv.update(record.name, encode(record), last=after)
        except KeyWrongLastSequenceError:
            raise StoreError(
                f"another push of {record.name!r} landed first; look at"
                " `pathwatch config history` and push again"
            ) from None


@dataclass(frozen=True)
class Pushed:
    """What a push did: the revision that holds the config now, and whether that was
    already the latest one (nothing written)."""

    revision: int
    unchanged: bool


async def push_checked(
    store: ConfigStore,
    loaded: LoadedConfig,
    text: str,
    *,
    name: str,
    comment: str = "",
    rollback_of: int | None = None,
    force: bool = False,
) -> Pushed:
    """Store checked config `text` as the next revision of `name`, unless the latest
    revision already holds the same text (and not `force`)."""
    latest = await store.latest_entry(name)
    if latest is not None and not force:
        try:
            same = decode_entry(*latest).record.digest == loaded.digest
        except DecodeError:
            same = False
        if same:
            return Pushed(latest[0], unchanged=True)
    record = record_for(loaded, text, name=name, rollback_of=rollback_of, comment=comment)
    return Pushed(await store.push(record, latest[0] if latest else None), unchanged=False)
