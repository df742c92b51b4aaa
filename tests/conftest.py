"""Shared fixtures: one real nats-server per test session on a free loopback port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pathwatch.runtime.bus import Bus, BusOptions
from pathwatch.runtime.embedded import EmbeddedNats, free_port

if TYPE_CHECKING:
    from tests.test_e2e_up import Listener


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """A real nats-server with JetStream for the whole session."""
    server = EmbeddedNats(store_dir=tmp_path_factory.mktemp("nats"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_url(nats_server: EmbeddedNats) -> str:
    return nats_server.url


@pytest.fixture
async def bus(nats_server: EmbeddedNats) -> AsyncIterator[Bus]:
    """A connected Bus with the contract's streams and buckets in place."""
    connected = await Bus.connect(BusOptions.from_url(nats_server.url, name="test"))
    await connected.ensure()
    try:
        yield connected
    finally:
        await connected.close()


async def wait_for(
    condition: Callable[[], Awaitable[bool] | bool],
    timeout: float,
    interval: float = 0.02,
    what: str = "condition",
) -> float:
    """Poll `condition` until it is true; return the seconds waited, fail at the deadline."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    """A TCP service on a free loopback port (`tests.test_e2e_up.Listener`), closed after."""
    from tests.test_e2e_up import Listener

    service = Listener(free_port())
    await service.open()
    try:
        yield service
    finally:
        await service.close()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "pathwatch.db"
