"""A long-lived event loop in a thread inside a named network namespace.

The healer's NATS connection stays where the healer runs, while its liveness
pings and route changes happen inside the client's namespace: `submit(factory)`
runs `factory()` on the namespace loop and awaits the result from the caller's
loop. Sockets and netlink handles created there live in that namespace.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TypeVar

from agents.nsexec import enter_netns

T = TypeVar("T")


class NetnsLoop:
    """Start with `start()`, use `submit`, end with `close()` (safe to call twice)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> NetnsLoop:
        ready: Future[asyncio.AbstractEventLoop] = Future()

        def body() -> None:
            try:
                enter_netns(self.name)
                loop = asyncio.new_event_loop()
            except BaseException as exc:
                ready.set_exception(exc)
                return
            asyncio.set_event_loop(loop)
            ready.set_result(loop)
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=body, name=f"healer-netns-{self.name}", daemon=True)
        self._thread.start()
        self._loop = ready.result(timeout=10)
        return self

    async def submit(self, factory: Callable[[], Awaitable[T]]) -> T:
        """Await `factory()` run on the namespace's loop."""
        if self._loop is None:
            raise RuntimeError("NetnsLoop not started")

        async def wrapped() -> T:
            return await factory()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(wrapped(), self._loop))

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
