"""The DNS probe against a real resolver on loopback (a small dnspython server the
test runs): ok, NXDOMAIN, a wrong answer, no answer (timeout), an ICMP-refused
port; then end to end through the config, the agent's plan and NATS."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator

import dns.message
import dns.rcode
import dns.rrset

from agents.agent import Agent
from agents.probe.base import Target
from agents.probe.dns import probe_dns
from pathwatch.runtime.bus import Bus, BusOptions
from pathwatch.runtime.configfile import parse_config
from schemas.codec import decode_message
from schemas.probekinds import DnsProbeProfile
from schemas.wire import MeasurementBatch
from tests.conftest import wait_for

#: name -> the A record the resolver answers (None: NXDOMAIN; "" : no answer at all)
ZONE = {"ok.test.": "192.0.2.1", "other.test.": "192.0.2.99", "silent.test.": ""}


class Resolver(asyncio.DatagramProtocol):
    """Answers A queries from ZONE; counts the queries it got."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.queries = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queries += 1
        query = dns.message.from_wire(data)
        name = query.question[0].name.to_text()
        answer = dns.message.make_response(query)
        record = ZONE.get(name)
        if record == "":
            return
        if record is None:
            answer.set_rcode(dns.rcode.NXDOMAIN)
        else:
            answer.answer.append(dns.rrset.from_text(name, 30, "IN", "A", record))
        assert self.transport is not None
        self.transport.sendto(answer.to_wire(), addr)


@contextlib.asynccontextmanager
async def resolver() -> AsyncIterator[tuple[Resolver, int]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Resolver, local_addr=("127.0.0.1", 0))
    try:
        yield protocol, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback UDP port nothing listens on (held by no one once yielded)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    yield port


def profile(name: str, port: int, **kwargs: object) -> DnsProbeProfile:
    values: dict[str, object] = {
        "probe_address": ["127.0.0.1"],
        "port": port,
        "query_name": name,
        "number_of_attempts": 2,
        "probe_duration": 0.3,
    }
    values.update(kwargs)
    return DnsProbeProfile(**values)  # type: ignore[arg-type]


async def lookup(name: str, port: int, **kwargs: object) -> list[tuple[str, str]]:
    target = Target(address="127.0.0.1", probe="dns", port=port)
    found = await probe_dns(target, profile(name, port, **kwargs), time.monotonic() + 2)
    assert all(m.protocol == "dns" and m.destination == "127.0.0.1" for m in found)
    return [(m.outcome, m.detail) for m in found]


async def test_outcomes_against_a_loopback_resolver() -> None:
    async with resolver() as (server, port):
        assert await lookup("ok.test", port) == [("ok", ""), ("ok", "")]
        assert await lookup("ok.test", port, expect_address=["192.0.2.1"]) == [("ok", "")] * 2
        assert await lookup("gone.test", port) == [("dns-error", "rcode NXDOMAIN")] * 2
        wrong = await lookup("other.test", port, expect_address=["192.0.2.1"])
        assert wrong == [("bad-reply", "answer ['192.0.2.99'] has none of ['192.0.2.1']")] * 2
        assert (
            await lookup("ok.test", port, record_type="AAAA")
            == [("bad-reply", "no AAAA record for ok.test")] * 2
        )
        started = time.monotonic()
        assert await lookup("silent.test", port) == [("timeout", "")] * 2
        assert time.monotonic() - started < 1.5
        assert server.queries == 12
    with closed_port() as port:
        outcomes = await lookup("ok.test", port)
        assert {outcome for outcome, _ in outcomes} == {"unreachable"}


async def test_ok_latency_is_the_lookup_time() -> None:
    async with resolver() as (_, port):
        target = Target(address="127.0.0.1", probe="dns", port=port)
        found = await probe_dns(target, profile("ok.test", port), time.monotonic() + 2)
    assert all(m.latency_ms is not None and 0 < m.latency_ms < 250 for m in found)


CONFIG = """
dns-probe-profiles:
  lookup:
    probe-interval: 0.2
    number-of-attempts: 1
    probe-duration: 0.1
    probe-address: [127.0.0.1]
    port: {port}
    query-name: ok.test
    expect-address: [192.0.2.1]
reachability-profiles:
  strict:
    dns:
      best-effort: {{acceptable-error-threshold: 10}}
services:
  names:
    service-routes:
      here:
        next-hop: {{node: n1}}
        reachability-detection:
          reachability-profile: strict
          probes: [{{name: lookup, dns-probe-profile: lookup}}]
"""


async def test_agent_publishes_dns_lanes(bus: Bus, nats_url: str) -> None:
    batches: list[MeasurementBatch] = []

    async def on_meas(msg: object) -> None:
        batches.append(decode_message(msg.data, MeasurementBatch))  # type: ignore[attr-defined]

    await bus.nc.subscribe("pw.meas.names.>", cb=on_meas)
    await bus.nc.flush()
    async with resolver() as (_, port):
        loaded = parse_config(CONFIG.format(port=port))
        agent_bus = await Bus.connect(BusOptions.from_url(nats_url, name="dns-agent"))
        agent = Agent(loaded.config, agent_bus, agent_name="a-dns", node="n1")
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            await wait_for(lambda: len(batches) >= 2, 5, what="two batches")
        finally:
            stop.set()
            await task
            await agent_bus.close()
    items = [item for batch in batches for item in batch.items]
    assert {(m.protocol, m.probe, m.outcome) for m in items} == {("dns", "lookup", "ok")}
