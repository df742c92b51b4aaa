"""Test helpers for the status page: the API served in-process on a free port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from enforcer.api import run_api
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.embedded import free_port
from schemas.config import PathwatchConfig
from tests.conftest import wait_for


def page_config(
    nats_url: str, store: Path, service: str, *, token: str | None = None, port: int = 0
) -> PathwatchConfig:
    """One service with routes r1 (tcp, strict profile) and r2; API on loopback."""
    token_line = f", token: {token}" if token else ""
    text = f"""
nats: {{url: "{nats_url}"}}
api: {{listen: "127.0.0.1:{port or free_port()}"{token_line}}}
store: {{path: "{store}"}}
reachability-profiles:
  strict:
    tcp:
      best-effort:
        acceptable-error-threshold: 20
        time-to-establishment: {{max: 300, mean: 150}}
services:
  {service}:
    address: [127.0.0.1/32]
    service-routes:
      r1:
        next-hop: {{node: local, interface: lo}}
        reachability-detection: {{reachability-profile: strict}}
      r2:
        next-hop: {{node: local, interface: lo}}
"""
    return parse_config(text, "page-test.yaml").config


@contextlib.asynccontextmanager
async def serving(config: PathwatchConfig, bus: Bus) -> AsyncIterator[str]:
    """Run the API (with the status page) until the block ends; yield its base URL."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_api(config, bus, stop=stop))
    base = f"http://{config.api.listen}"

    async def answers() -> bool:
        if task.done():
            task.result()
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{base}/healthz", timeout=1)).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        await wait_for(answers, 10, what="the API to answer")
        yield base
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
