"""Slow HTTP clients against a real `pathwatch up` whose file limit is lowered.

`pathwatch up` runs with RLIMIT_NOFILE 256, so each HTTP server keeps at most
32 connections (`limits.http_connection_limit`). 300 clients connect to the API
and 300 to `/metrics`, each sending a partial request head and nothing more:
600 connections, more than the process's whole file limit. While they hang on,
`/healthz` and `/metrics` still answer new clients and the process stays under
its limit; the slow clients are cut off after `HTTP_HEADER_TIMEOUT_S`; after
they leave, everything answers and windows are still published.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pathwatch.runtime.embedded import EmbeddedNats
from schemas.limits import HTTP_HEADER_TIMEOUT_S
from tests.conftest import wait_for
from tests.hostile_up import Up, running_up

pytestmark = pytest.mark.slow

FILE_LIMIT = 256
SLOW_CLIENTS = 300
PARTIAL_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


def _lower_file_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))


@pytest.fixture
def up(nats_server: EmbeddedNats, tmp_path: Path) -> Iterator[Up]:
    with running_up(nats_server.url, tmp_path, "slow", _lower_file_limit) as running:
        yield running


async def _slow_client(port: int, cut: list[float], started: float) -> asyncio.StreamWriter | None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    except (OSError, TimeoutError):
        return None
    writer.write(PARTIAL_HEAD)

    async def watch() -> None:
        # cut off: the server closed it (end of stream) or reset it (a server that
        # closes a socket holding unread bytes of the partial head sends a reset)
        try:
            await asyncio.wait_for(reader.read(), HTTP_HEADER_TIMEOUT_S + 10)
        except TimeoutError:  # (an OSError too, so first): never cut off
            return
        except OSError:
            pass
        cut.append(time.monotonic() - started)

    asyncio.get_running_loop().create_task(watch())
    return writer


def _open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def _answers(client: httpx.AsyncClient, api: int, metrics: int) -> bool:
    try:
        health = await client.get(f"http://127.0.0.1:{api}/healthz")
        scrape = await client.get(f"http://127.0.0.1:{metrics}/metrics")
    except httpx.HTTPError:
        return False
    return health.status_code == 200 and scrape.status_code == 200 and "pathwatch_" in scrape.text


def _windows_published(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("pathwatch_ingest_batches_total"):
            return float(line.rpartition(" ")[2])
    return 0.0


async def test_slow_clients_are_cut_off_and_the_process_stays_healthy(
    up: Up,
) -> None:
    process, api, metrics = up.process, up.api, up.metrics
    async with httpx.AsyncClient(timeout=3) as client:

        async def ready() -> bool:
            assert process.poll() is None, "pathwatch up exited"
            return await _answers(client, api, metrics)

        await wait_for(ready, 30, what="pathwatch up serving")
        print("\nbaseline open files", _open_files(process.pid))
        cut: list[float] = []
        started = time.monotonic()
        writers = [
            w
            for w in await asyncio.gather(
                *(_slow_client(port, cut, started) for port in [api, metrics] * SLOW_CLIENTS)
            )
            if w is not None
        ]
        print(f"\n{len(writers)} slow clients connected; open files {_open_files(process.pid)}")
        most_open = 0
        answered_during = 0
        while time.monotonic() - started < HTTP_HEADER_TIMEOUT_S - 1:
            most_open = max(most_open, _open_files(process.pid))
            answered_during += await _answers(client, api, metrics)
            await asyncio.sleep(0.2)
        print(f"answered {answered_during} times during; most open files {most_open}")
        assert answered_during >= 3
        assert most_open < FILE_LIMIT

        # a generous deadline: on a loaded 2-core machine 600 clients notice slowly
        await wait_for(
            lambda: len(cut) >= len(writers),
            HTTP_HEADER_TIMEOUT_S + 30,
            what="every slow client cut off",
        )
        print(f"every slow client cut off within {max(cut):.1f} s")
        for writer in writers:
            writer.close()
        before = _windows_published((await client.get(f"http://127.0.0.1:{metrics}/metrics")).text)

        async def still_working() -> bool:
            assert process.poll() is None, "pathwatch up exited"
            text = (await client.get(f"http://127.0.0.1:{metrics}/metrics")).text
            return await _answers(client, api, metrics) and _windows_published(text) > before

        await wait_for(still_working, 10, what="answers and new batches after the slow clients")
