"""Small asyncio helpers shared by the components."""

from __future__ import annotations

import asyncio
from typing import Any


async def wait_any(
    events: tuple[asyncio.Event, ...],
    timeout: float | None,
    task: asyncio.Task[Any] | None = None,
) -> None:
    """Return when one of `events` is set, `task` (not cancelled here) ends, or after
    `timeout` seconds (None: no limit)."""
    waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(event.wait()) for event in events}
    try:
        await asyncio.wait(
            waiters | ({task} if task is not None else set()),
            timeout=timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        for waiter in waiters:
            waiter.cancel()
