"""The passive source against the real kernel, in namespaces the tests create:
time-to-establishment matches what the client measured, a closed port is
close-before-establishment, a dropped SYN is timeout-before-establishment,
UDP to a closed port is unreachable, the outcomes stay the same when
conntrack sends only the events the agent needs, and the fast decoder
agrees with pyroute2's parser on the kernel's own messages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from pyroute2.netlink.marshal import Marshal
from pyroute2.netlink.nfnetlink.nfctsocket import AsyncNFCTSocket

from agents.nsexec import run_in_netns, socket_in_netns
from agents.passive.events import decode_events
from agents.passive.follower import open_conntrack_socket
from agents.passive.source import PassiveSource, route_choices
from pathwatch.runtime.configfile import parse_config
from schemas.wire import Measurement
from tests.conftest import wait_for
from tests.netns import requires_nft, requires_root
from tests.test_passive_beds import (
    CLOSED_PORT,
    DROPPED_PORT,
    FAR_SERVICE,
    NEAR_1,
    TCP_PORT,
    UDP_CLOSED_PORT,
    UDP_ECHO_PORT,
    PassiveBed,
    config_yaml,
    far_listener,
    passive_bed,
    requires_event_timestamps,
)

T = TypeVar("T")


class Published:
    """What the source handed to `publish`, per route."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, Measurement]] = []

    async def __call__(self, service: str, route: str, items: list[Measurement]) -> None:
        self.items.extend((service, route, item) for item in items)

    def outcomes(self) -> list[str]:
        return [item.outcome for _s, _r, item in self.items]


@contextlib.asynccontextmanager
async def following(bed: PassiveBed) -> AsyncIterator[tuple[PassiveSource, Published]]:
    config = parse_config(config_yaml(bed)).config
    published = Published()
    source = PassiveSource(config, route_choices(config, "n1"), published)
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    await asyncio.wait_for(source.ready.wait(), 10)
    try:
        yield source, published
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def in_near(bed: PassiveBed, work: Callable[[], T]) -> T:
    """Run blocking client code in a thread inside the near namespace."""

    async def body() -> T:
        return work()

    runner: Callable[[], Awaitable[T]] = body
    return await run_in_netns(bed.near, runner)


def timed_connects(count: int) -> list[float]:
    """`count` sequential connects to the far TCP server; the client's own ms for each."""
    measured: list[float] = []
    for _ in range(count):
        with socket.socket() as client:
            started = time.perf_counter()
            client.connect((FAR_SERVICE, TCP_PORT))
            measured.append((time.perf_counter() - started) * 1000)
    return measured


#: `timed_connects` as a program of its own, so that the client's clock is not
#: blurred by waiting for the GIL while the agent (in this process) reads events,
#: nor (real-time priority, where allowed) by other work preempting the client
#: on a busy machine: the client's figure is the reference here
_CLIENT_PROGRAM = f"""
import contextlib, json, os, socket, sys, time
with contextlib.suppress(OSError):
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
measured = []
for _ in range(int(sys.argv[1])):
    with socket.socket() as client:
        started = time.perf_counter()
        client.connect(({FAR_SERVICE!r}, {TCP_PORT}))
        measured.append((time.perf_counter() - started) * 1000)
print(json.dumps(measured))
"""


async def timed_connects_in_a_process(bed: PassiveBed, count: int) -> list[float]:
    """`timed_connects` run by a separate Python process in the near namespace."""
    process = await asyncio.create_subprocess_exec(
        "ip",
        "netns",
        "exec",
        bed.near,
        sys.executable,
        "-c",
        _CLIENT_PROGRAM,
        str(count),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    measured: list[float] = json.loads(out)
    return measured


@requires_root
@requires_nft
@requires_event_timestamps
async def test_time_to_establishment_matches_the_client_within_a_millisecond() -> None:
    with passive_bed() as bed:
        listener = far_listener(bed)
        try:
            async with following(bed) as (source, published):
                client_ms = await timed_connects_in_a_process(bed, 20)
                await wait_for(lambda: len(published.items) >= 20, 5, what="20 sessions")
        finally:
            listener.close()
    assert len(published.items) == 20
    differences: list[float] = []
    for (service, route, item), measured in zip(published.items, client_ms, strict=True):
        assert (service, route) == ("web", "link1")
        assert (item.source, item.protocol, item.outcome) == ("passive", "tcp", "ok")
        assert item.traffic_class == "high"  # port-classes {8080: high}
        assert item.destination == FAR_SERVICE  # a /32 of the service: tracked
        assert item.latency_ms is not None
        differences.append(abs(item.latency_ms - measured))
    # timed by the kernel's event timestamps, not by when the agent read the events
    assert source.tracker.counters["timed_by_kernel"] == 20
    assert max(differences) < 1.0, differences


@requires_root
@requires_nft
async def test_closed_port_is_close_before_establishment() -> None:
    def refused() -> int:
        failures = 0
        for _ in range(3):
            with socket.socket() as client:
                try:
                    client.connect((FAR_SERVICE, CLOSED_PORT))
                except ConnectionRefusedError:
                    failures += 1
        return failures

    with passive_bed() as bed:
        async with following(bed) as (_source, published):
            assert await in_near(bed, refused) == 3
            await wait_for(lambda: len(published.items) >= 3, 5, what="3 sessions")
    assert published.outcomes() == ["close-before-establishment"] * 3
    assert {item.traffic_class for _s, _r, item in published.items} == {"best-effort"}


@requires_root
@requires_nft
async def test_dropped_syn_is_timeout_before_establishment() -> None:
    def dropped() -> str:
        with socket.socket() as client:
            client.settimeout(3.5)  # SYN retransmitted at 1 s and 3 s; SYN_SENT expires at 1 s
            try:
                client.connect((FAR_SERVICE, DROPPED_PORT))
            except TimeoutError:
                return "timeout"
            return "connected"

    with passive_bed(syn_sent_timeout=1) as bed:
        async with following(bed) as (source, published):
            assert await in_near(bed, dropped) == "timeout"
            await wait_for(lambda: bool(published.items), 15, what="the expired session")
    assert published.outcomes()[0] == "timeout-before-establishment"
    assert set(published.outcomes()) == {"timeout-before-establishment"}
    assert source.tracker.counters["ok"] == 0


@requires_root
@requires_nft
async def test_udp_to_a_closed_port_is_unreachable() -> None:
    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.connect((FAR_SERVICE, UDP_CLOSED_PORT))
            client.send(b"hello")

    with passive_bed() as bed:
        async with following(bed) as (source, published):
            await in_near(bed, send)
            await wait_for(lambda: bool(published.items), 5, what="the unreachable session")
    _service, route, item = published.items[0]
    assert (route, item.protocol, item.outcome, item.latency_ms) == (
        "link1",
        "udp",
        "unreachable",
        None,
    )
    assert source.icmp.errors_seen == 1


@requires_root
@requires_nft
async def test_event_mask_gives_the_same_outcomes_from_fewer_events() -> None:
    """With `ct event set` (docs/passive.md) conntrack sends NEW, then ESTABLISHED
    (TCP) or the first reply (UDP), then DESTROY: nothing the tracker needs is lost."""

    def sessions(server: socket.socket) -> bytes:
        timed_connects(3)
        with socket.socket() as refused, contextlib.suppress(ConnectionRefusedError):
            refused.connect((FAR_SERVICE, CLOSED_PORT))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            client.connect((FAR_SERVICE, UDP_ECHO_PORT))
            client.send(b"ping")
            data, peer = server.recvfrom(64)
            server.sendto(data, peer)
            return client.recv(64)

    with passive_bed(event_mask=True) as bed:
        listener = far_listener(bed)
        echo = socket_in_netns(bed.far, socket.AF_INET, socket.SOCK_DGRAM)
        echo.settimeout(5)
        echo.bind((FAR_SERVICE, UDP_ECHO_PORT))
        try:
            async with following(bed) as (source, published):
                assert await in_near(bed, lambda: sessions(echo)) == b"ping"
                await wait_for(lambda: len(published.items) >= 5, 5, what="5 sessions")
                events = source.follower.datagrams
        finally:
            listener.close()
            echo.close()
    outcomes = sorted((item.protocol, item.outcome) for _s, _r, item in published.items)
    assert outcomes == [
        ("tcp", "close-before-establishment"),
        ("tcp", "ok"),
        ("tcp", "ok"),
        ("tcp", "ok"),
        ("udp", "ok"),
    ]
    # NEW + ESTABLISHED for each connect, NEW + DESTROY for the refused one, NEW + reply for UDP
    assert events == 3 * 2 + 2 + 2
    assert source.tracker.counters["timed_by_kernel"] == 4


@requires_root
@requires_nft
async def test_fast_decoder_agrees_with_pyroute2_on_kernel_messages() -> None:
    marshal = Marshal()
    marshal.msg_map.update(AsyncNFCTSocket.policy)
    with passive_bed() as bed:
        sock = open_conntrack_socket(bed.near)
        sock.setblocking(True)
        sock.settimeout(5)
        listener = far_listener(bed)
        try:
            await in_near(bed, lambda: timed_connects(1))
            datagrams = [sock.recv(65536) for _ in range(3)]  # NEW, SYN_RECV, ESTABLISHED
        finally:
            listener.close()
            sock.close()
    for data in datagrams:
        (ours,) = decode_events(data)
        (theirs,) = list(marshal.parse(data))
        orig = theirs.get_attr("CTA_TUPLE_ORIG")
        ip = orig.get_attr("CTA_TUPLE_IP")
        proto = orig.get_attr("CTA_TUPLE_PROTO")
        info = theirs.get_attr("CTA_PROTOINFO").get_attr("CTA_PROTOINFO_TCP")
        assert ours.ct_id == theirs.get_attr("CTA_ID")
        assert ours.status == theirs.get_attr("CTA_STATUS")
        assert ours.source == ip.get_attr("CTA_IP_V4_SRC") == NEAR_1
        assert ours.destination == ip.get_attr("CTA_IP_V4_DST") == FAR_SERVICE
        assert ours.protocol == proto.get_attr("CTA_PROTO_NUM") == socket.IPPROTO_TCP
        assert ours.source_port == proto.get_attr("CTA_PROTO_SRC_PORT")
        assert ours.destination_port == proto.get_attr("CTA_PROTO_DST_PORT") == TCP_PORT
        assert ours.tcp_state == info.get_attr("CTA_PROTOINFO_TCP_STATE")
    assert [event.kind for data in datagrams for event in decode_events(data)] == [
        "new",
        "update",
        "update",
    ]
    # decoding for the tracker (`wanted`): updates without their flow, the rest the same
    full = [event for data in datagrams for event in decode_events(data)]
    lean = [event for data in datagrams for event in decode_events(data, lambda _id: True)]
    assert lean[0] == full[0]
    for ours, complete in zip(lean[1:], full[1:], strict=True):
        assert (ours.source, ours.source_port, ours.protocol) == ("", 0, 0)
        fields = ("kind", "ct_id", "status", "tcp_state", "mark", "kernel_ns")
        assert [getattr(ours, name) for name in fields] == [
            getattr(complete, name) for name in fields
        ]
    assert decode_events(datagrams[1], lambda _id: False) == []
    # the kernel's event times (nf_conntrack_timestamp is on in the bed), in order
    stamps = [event.kernel_ns for event in full]
    if all(stamps):  # Linux 6.14 and later
        assert stamps == sorted(stamps)
        assert abs(stamps[0] / 1e9 - time.time()) < 60
