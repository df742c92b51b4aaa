"""The state directory of `pathwatch up`: the parent of `nats.store-dir` (`.pathwatch/`
by default, where the default config also keeps its SQLite store).

* `up.lock` keeps one `pathwatch up` per directory: an flock that the kernel releases
  when the process ends, however it ends; it holds the owner's pid for the message.
* `up.json` tells the other commands (`alarms --follow`, the roles) where the
  embedded NATS server of the running `up` listens (and, once `up` runs its server with
  credentials, which credentials file to use). It is removed on a clean exit; one left
  behind by a process that is gone is recognised as stale.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

import msgspec

from schemas.config import NatsConfig

LOCK_NAME = "up.lock"
ENDPOINT_NAME = "up.json"


def state_dir(nats: NatsConfig) -> Path:
    """The state directory of a config: the parent of its `nats.store-dir`."""
    return Path(nats.store_dir).parent


class StateDirBusy(RuntimeError):
    """Another `pathwatch up` holds the state directory."""


class StateDirLock:
    """Hold `<dir>/up.lock` (exclusive, non-blocking) for as long as the context lasts."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> StateDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateDirBusy(
                f"state directory {self.path.parent} is in use by another pathwatch up"
                f" (pid {holder}, lock {self.path}): stop that one, or give this one its own"
                " nats.store-dir (the state directory is its parent)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # releases the lock; the file stays (unlinking it would race)


class UpEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    """What a running `pathwatch up` tells other commands (`up.json`)."""

    pid: int
    nats_url: str
    #: A NATS credentials file for clients, when `up` runs its server with credentials.
    nats_credentials: str | None = None


class NoRunningUp(RuntimeError):
    """No live `pathwatch up` on this state directory to take the NATS URL from."""


def write_endpoint(directory: Path, endpoint: UpEndpoint) -> Path:
    """Write `<dir>/up.json` atomically; return its path."""
    path = directory / ENDPOINT_NAME
    partial = path.with_suffix(".json.partial")
    partial.write_bytes(msgspec.json.encode(endpoint) + b"\n")
    os.replace(partial, path)
    return path


def remove_endpoint(directory: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (directory / ENDPOINT_NAME).unlink()


def read_endpoint(directory: Path) -> UpEndpoint:
    """The endpoint of the live `pathwatch up` on `directory`, or NoRunningUp saying why."""
    path = directory / ENDPOINT_NAME
    remedy = "start `pathwatch up`, or give --nats URL (or set nats.url)"
    try:
        endpoint = msgspec.json.decode(path.read_bytes(), type=UpEndpoint)
    except FileNotFoundError:
        raise NoRunningUp(
            f"nats.url is `embedded` and no pathwatch up is running on state directory"
            f" {directory} (no {path}): {remedy}"
        ) from None
    except (OSError, msgspec.DecodeError) as exc:
        raise NoRunningUp(f"cannot read {path} ({exc}): {remedy}") from None
    if not _alive(endpoint.pid):
        raise NoRunningUp(
            f"{path} is stale: the pathwatch up that wrote it (pid {endpoint.pid}) is not"
            f" running; {remedy}"
        )
    return endpoint


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
