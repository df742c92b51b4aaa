"""Small asyncio helpers shared by the components."""

from __future__ import annotations

import asyncio


async def wait_any(events: tuple[asyncio.Event, ...], timeout: float) -> None:
    """Return when one of `events` is set or after `timeout` seconds."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
