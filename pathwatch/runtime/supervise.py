"""`supervise`: keep one consumer task running until `stop`, however it ends.

Every long-lived consumer (subscription loop, KV watch, request handler loop)
of every role runs under it: a consumer that returns or raises before `stop`
is counted in `restarts[name]`, logged with why, and started again after a
backoff (`limits.SUPERVISOR_BACKOFF_S`, doubling up to
`limits.SUPERVISOR_MAX_BACKOFF_S`, back to the start after a long healthy run).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from schemas.limits import SUPERVISOR_BACKOFF_S, SUPERVISOR_MAX_BACKOFF_S

log = logging.getLogger("pathwatch.supervise")

#: A run this long (seconds) counts as healthy: the next restart waits the shortest backoff.
HEALTHY_RUN_S = 60.0


async def supervise(
    name: str,
    consumer: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    restarts: Counter[str],
) -> None:
    """Run `consumer()` again and again until `stop` is set (or this task is cancelled)."""
    loop = asyncio.get_running_loop()
    backoff = SUPERVISOR_BACKOFF_S
    while not stop.is_set():
        started = loop.time()
        error: Exception | None = None
        try:
            await consumer()
        except Exception as exc:  # any end before stop is restarted, whatever it was
            error = exc
        if stop.is_set():
            return
        restarts[name] += 1
        if loop.time() - started >= HEALTHY_RUN_S:
            backoff = SUPERVISOR_BACKOFF_S
        why = "it returned" if error is None else f"{type(error).__name__}: {error}"[:300]
        log.warning(
            "%s ended (%s); restart %d in %.1f s",
            name,
            why,
            restarts[name],
            backoff,
            exc_info=error,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff)
        backoff = min(backoff * 2, SUPERVISOR_MAX_BACKOFF_S)


def start_supervised(
    name: str,
    consumer: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    restarts: Counter[str],
) -> asyncio.Task[None]:
    """`supervise` as a task named `name`."""
    return asyncio.create_task(supervise(name, consumer, stop, restarts), name=name)
