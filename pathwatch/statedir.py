"""The state directory of `pathwatch up`: the parent of `nats.store-dir` (`.pathwatch/`
by default, where the default config also keeps its SQLite store).

* `up.lock` keeps one `pathwatch up` per directory: an flock that the kernel releases
  when the process ends, however it ends; it holds the owner's pid for the message.
* `up.json` tells the other commands (`alarms --follow`, the roles) where the
  embedded NATS server of the running `up` listens and which file holds its
  credentials. It is removed on a clean exit; one left behind by a process that is
  gone is recognised as stale.
* `nats-auth.json` (mode 0600) holds the user and password of the embedded server,
  made at the first start and kept; `nats-server.conf` (0600) gives them to the
  server. Only the local user that runs `up` (and root) can read them, so no other
  local user can reach the server's streams and buckets.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from pathlib import Path
from types import TracebackType

import msgspec

from schemas.config import NatsConfig

LOCK_NAME = "up.lock"
ENDPOINT_NAME = "up.json"
AUTH_NAME = "nats-auth.json"
SERVER_CONFIG_NAME = "nats-server.conf"
#: The user of the embedded server (every part of `up` and every local command).
EMBEDDED_USER = "pathwatch"


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
    #: The file with the user and password of the server (`NatsAuth`).
    nats_auth: str | None = None


class NatsAuth(msgspec.Struct, frozen=True, kw_only=True):
    """The credentials of the embedded server (`nats-auth.json`)."""

    user: str
    password: str


def embedded_auth(directory: Path) -> tuple[NatsAuth, Path]:
    """The credentials of the embedded server in `directory` (made at the first start,
    mode 0600), and the server config file that requires them (written anew, 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / AUTH_NAME
    if not path.exists():
        auth = NatsAuth(user=EMBEDDED_USER, password=secrets.token_hex(24))
        _write_private(path, msgspec.json.encode(auth) + b"\n")
    os.chmod(path, 0o600)  # also tightens a copy made with a looser mode
    auth = msgspec.json.decode(path.read_bytes(), type=NatsAuth)
    config = directory / SERVER_CONFIG_NAME
    user, password = json.dumps(auth.user), json.dumps(auth.password)
    text = (
        f"# written by pathwatch up at every start, from {AUTH_NAME}\n"
        f"authorization {{ user: {user}, password: {password} }}\n"
    )
    _write_private(config, text.encode())
    return auth, config


def _write_private(path: Path, data: bytes) -> None:
    """Write `path` atomically, readable by its owner only from the first byte on."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, path)


def read_auth(endpoint: UpEndpoint) -> NatsAuth | None:
    """The credentials named by `endpoint`, None when its server has none; NoRunningUp
    saying why when they cannot be read (another local user's `up`, say)."""
    if endpoint.nats_auth is None:
        return None
    try:
        return msgspec.json.decode(Path(endpoint.nats_auth).read_bytes(), type=NatsAuth)
    except (OSError, msgspec.DecodeError) as exc:
        raise NoRunningUp(
            f"cannot read the credentials of the running pathwatch up ({exc}): run this as"
            " the user that started it, or give --nats URL with credentials"
        ) from None


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
