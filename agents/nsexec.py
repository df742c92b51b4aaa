"""Run a coroutine inside a named network namespace, in a thread of its own.

`setns(CLONE_NEWNET)` moves only the calling thread, so a dedicated thread
enters `/run/netns/<name>`, runs the coroutine on its own event loop, and
ends; sockets opened there stay in that namespace. Used to probe from inside
a namespace (and by the namespace tests).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"


def enter_netns(name: str) -> None:
    """Move the calling thread into network namespace `name`."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns({name}): {os.strerror(error)}")
    finally:
        os.close(fd)


async def run_in_netns(name: str, factory: Callable[[], Awaitable[T]]) -> T:
    """Await `factory()` run on a fresh event loop in a thread inside namespace `name`."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def deliver(result: T | None, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def body() -> None:
        try:
            enter_netns(name)

            async def wrapped() -> T:
                return await factory()

            result = asyncio.run(wrapped())
        except BaseException as exc:
            loop.call_soon_threadsafe(deliver, None, exc)
        else:
            loop.call_soon_threadsafe(deliver, result, None)

    threading.Thread(target=body, name=f"netns-{name}", daemon=True).start()
    return await done


def socket_in_netns(
    name: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM, proto: int = 0
) -> socket.socket:
    """A new socket that lives in namespace `name` (usable from any thread)."""
    holder: list[socket.socket | BaseException] = []

    def body() -> None:
        try:
            enter_netns(name)
            holder.append(socket.socket(family, kind, proto))
        except BaseException as exc:
            holder.append(exc)

    thread = threading.Thread(target=body, name=f"netns-socket-{name}", daemon=True)
    thread.start()
    thread.join()
    made = holder[0]
    if isinstance(made, BaseException):
        raise made
    return made
