"""The supervisor every role runs its consumers under: restarts, counts, logs, stops."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest

from pathwatch.runtime.supervise import start_supervised
from tests.conftest import wait_for


async def test_a_consumer_that_ends_is_restarted_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()
    restarts: Counter[str] = Counter()
    runs: list[int] = []

    async def consumer() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RecursionError("maximum recursion depth exceeded")
        if len(runs) == 2:
            return  # ended without an error: restarted too
        await stop.wait()

    with caplog.at_level(logging.WARNING, logger="pathwatch.runtime.supervise"):
        task = start_supervised("test-consumer", consumer, stop, restarts)
        await wait_for(lambda: len(runs) == 3, 5, what="third run")
        assert restarts == Counter({"test-consumer": 2})
        assert "RecursionError" in caplog.text and "it returned" in caplog.text
        stop.set()
        await asyncio.wait_for(task, 1)
    assert restarts["test-consumer"] == 2  # an end after stop is not a restart


async def test_cancelling_the_supervisor_cancels_its_consumer() -> None:
    stop = asyncio.Event()
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def consumer() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = start_supervised("sleeper", consumer, stop, Counter())
    await asyncio.wait_for(started.wait(), 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()
