"""How the router, the healer and the API take a new config revision (their `LiveConfig`
hooks), against a real nats-server: the router's routes, the healer's (refusing one
without the client's route), the API's token and routes (swapped while serving)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from agents.healer.healer import Healer
from agents.router import Router
from enforcer.api import run_api
from enforcer.api_settings import CurrentSettings
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.configsource import LiveConfig, Revision
from pathwatch.runtime.embedded import free_port
from tests.conftest import wait_for

ROUTE = """
      {name}:
        next-hop: {{node: {node}, interface: lo}}
        reachability-detection: {{probes: [{{name: plug, plugin: ext}}]}}"""


def revision(service: str, routes: dict[str, str], token: str | None = None) -> Revision:
    text = (f"api: {{listen: 127.0.0.1:1, token: {token}}}\n" if token else "") + (
        f"services:\n  {service}:\n    address: [127.0.0.1/32]\n    service-routes:"
        + "".join(ROUTE.format(name=name, node=node) for name, node in routes.items())
        + "\n"
    )
    return Revision(parse_config(text, "roles.yaml"))


async def test_the_router_takes_the_routes_of_its_node(bus: Bus) -> None:
    first = revision("web", {"r1": "n1", "r2": "n2"})
    live = LiveConfig("router", first)
    router = Router(first.config, bus, node="n1", dry_run=True, live=live)
    assert router._routes_on_node == {"web.r1"}
    assert await live.offer(revision("web", {"r1": "n1", "r2": "n1", "r3": "n1"}))
    assert router._routes_on_node == {"web.r1", "web.r2", "web.r3"}
    assert router._dirty.is_set()  # reconciled at once


async def test_the_healer_takes_new_routes_and_refuses_losing_its_own(bus: Bus) -> None:
    first = revision("web", {"r1": "n1"})
    live = LiveConfig("healer", first)
    healer = Healer(
        first.config, bus, service="web", route="r1", destination=["127.0.0.1"], live=live
    )
    assert await live.offer(revision("web", {"r1": "n1", "r2": "n2"}))
    assert set(healer.levels) == {"r1", "r2"}
    assert not await live.offer(revision("web", {"r2": "n2"}))
    assert live.refused == {"cannot-apply": 1} and set(healer.levels) == {"r1", "r2"}
    assert not await live.offer(revision("other", {"r1": "n1"}))
    assert live.refused == {"cannot-apply": 2}


async def test_the_api_swaps_its_token_and_routes_while_serving(bus: Bus) -> None:
    service = f"api-{uuid.uuid4().hex[:8]}"
    first = revision(service, {"r1": "n1"}, token="old-token")
    live = LiveConfig("api", first)
    port = free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_api(first.config, bus, stop=stop, listen=f"127.0.0.1:{port}", live=live)
    )
    url = f"http://127.0.0.1:{port}/api/v1/service-paths/{service}/r2"
    try:
        async with httpx.AsyncClient(timeout=5) as http:

            async def status(token: str) -> int:
                response = await http.get(url, headers={"Authorization": f"Bearer {token}"})
                return response.status_code

            await wait_for(lambda: _answers(http, port), 20, what="the API")
            assert await status("old-token") == 404  # no route r2
            assert await live.offer(revision(service, {"r1": "n1", "r2": "n1"}, token="new-token"))
            assert await status("old-token") == 403
            response = await http.get(url, headers={"Authorization": "Bearer new-token"})
            assert response.status_code == 404 and "no state yet" in response.text
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _answers(http: httpx.AsyncClient, port: int) -> bool:
    try:
        return (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_api_keeps_its_token_while_it_listens_off_loopback() -> None:
    with_token = revision("web", {"r1": "n1"}, token="t")
    settings = CurrentSettings(with_token.config, host="0.0.0.0")
    with pytest.raises(ValueError, match="off loopback: a token is required"):
        settings.swap(revision("web", {"r1": "n1"}).config)
    assert settings.token() == "t"
    CurrentSettings(with_token.config, host="::1").swap(revision("web", {"r1": "n1"}).config)
