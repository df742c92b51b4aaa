"""TCP and UDP probes against real faults in a namespace bed: drop, reset,
refused, ICMP unreachable, plus DSCP per class on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

from agents.nsexec import run_in_netns
from agents.probe.base import Target
from agents.probe.tcp import probe_tcp
from agents.probe.udp import probe_udp
from schemas.probekinds import TcpProbeProfile, UdpProbeProfile
from schemas.wire import Measurement
from tests.netns import in_ns, nft, requires_nft, requires_root
from tests.test_probe_beds import FAR_1, bed, far_socket

PORT = 7001
UDP_PORT = 7002


def tcp_profile(**kwargs: object) -> TcpProbeProfile:
    values: dict[str, object] = {
        "probe_address": [FAR_1],
        "port": PORT,
        "number_of_attempts": 2,
        "probe_duration": 0.4,
    }
    values.update(kwargs)
    return TcpProbeProfile(**values)  # type: ignore[arg-type]


def udp_profile(**kwargs: object) -> UdpProbeProfile:
    values: dict[str, object] = {
        "probe_address": [FAR_1],
        "port": UDP_PORT,
        "number_of_attempts": 2,
        "probe_duration": 0.4,
    }
    values.update(kwargs)
    return UdpProbeProfile(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def far_tcp_listener(ns_bed: object) -> AsyncIterator[None]:
    sock = far_socket(ns_bed, socket.SOCK_STREAM)  # type: ignore[arg-type]
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", PORT))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, sock=sock)
    try:
        yield
    finally:
        server.close()


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(b"pong:" + data, addr)  # type: ignore[attr-defined]


async def run_tcp(ns: str, profile: TcpProbeProfile, dscp: int = 0) -> list[Measurement]:
    target = Target(address=FAR_1, probe="t", port=profile.port, dscp=dscp)
    return await run_in_netns(ns, lambda: probe_tcp(target, profile, time.monotonic() + 3))


async def run_udp(ns: str, profile: UdpProbeProfile, dscp: int = 0) -> list[Measurement]:
    target = Target(address=FAR_1, probe="u", port=profile.port, dscp=dscp)
    return await run_in_netns(ns, lambda: probe_udp(target, profile, time.monotonic() + 3))


@requires_root
@requires_nft
async def test_tcp_outcomes_under_real_faults() -> None:
    with bed() as made:
        closed = await run_tcp(made.near, tcp_profile())
        assert [m.outcome for m in closed] == ["refused", "refused"]

        async with far_tcp_listener(made):
            ok = await run_tcp(made.near, tcp_profile())
            assert [m.outcome for m in ok] == ["ok", "ok"]
            assert all(m.protocol == "tcp" and m.latency_ms is not None for m in ok)

            # the handshake completes, then the far side resets the connection
            nft(
                made.far,
                "table inet pwreset {\n  chain in {\n    type filter hook input priority -10;\n"
                f"    tcp dport {PORT} tcp flags & (syn | ack) == ack reject with tcp reset\n"
                "  }\n}\n",
            )
            reset = await run_tcp(made.near, tcp_profile(hold_open=100))
            assert [m.outcome for m in reset] == ["reset", "reset"]
            in_ns(made.far, "nft", "delete", "table", "inet", "pwreset")

            nft(
                made.far,
                "table inet pwdrop {\n  chain in {\n    type filter hook input priority -10;\n"
                f"    tcp dport {PORT} drop\n  }}\n}}\n",
            )
            dropped = await run_tcp(made.near, tcp_profile())
            assert [m.outcome for m in dropped] == ["timeout", "timeout"]
            assert all(m.latency_ms is None for m in dropped)
            in_ns(made.far, "nft", "delete", "table", "inet", "pwdrop")

            nft(
                made.far,
                "table inet pwunreach {\n  chain in {\n    type filter hook input priority -10;\n"
                f"    tcp dport {PORT} reject with icmp type host-unreachable\n  }}\n}}\n",
            )
            unreachable = await run_tcp(made.near, tcp_profile())
            assert [m.outcome for m in unreachable] == ["unreachable", "unreachable"]


@requires_root
@requires_nft
async def test_udp_outcomes_under_real_faults() -> None:
    with bed() as made:
        sock = far_socket(made, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", UDP_PORT))
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Echo, sock=sock)
        try:
            ok = await run_udp(made.near, udp_profile(payload="ping", expect="pong:ping"))
            assert [m.outcome for m in ok] == ["ok", "ok"]
            bad = await run_udp(made.near, udp_profile(payload="ping", expect="something else"))
            assert [m.outcome for m in bad] == ["bad-reply", "bad-reply"]

            nft(
                made.far,
                "table inet pw {\n  chain in {\n    type filter hook input priority -10;\n"
                f"    udp dport {UDP_PORT} reject with icmp type port-unreachable\n  }}\n}}\n",
            )
            rejected = await run_udp(made.near, udp_profile())
            assert [m.outcome for m in rejected] == ["unreachable", "unreachable"]
            in_ns(made.far, "nft", "delete", "table", "inet", "pw")

            nft(
                made.far,
                "table inet pw {\n  chain in {\n    type filter hook input priority -10;\n"
                f"    udp dport {UDP_PORT} drop\n  }}\n}}\n",
            )
            dropped = await run_udp(made.near, udp_profile())
            assert [m.outcome for m in dropped] == ["timeout", "timeout"]
        finally:
            transport.close()


@requires_root
@requires_nft
async def test_tcp_and_udp_carry_the_class_dscp() -> None:
    with bed() as made:
        nft(
            made.far,
            "table inet pw {\n  counter tcp46 {}\n  counter udp34 {}\n"
            "  chain in {\n    type filter hook input priority -10;\n"
            f"    tcp dport {PORT} ip dscp 46 counter name tcp46\n"
            f"    udp dport {UDP_PORT} ip dscp 34 counter name udp34\n  }}\n}}\n",
        )
        await run_tcp(made.near, tcp_profile(), dscp=46)
        await run_udp(made.near, udp_profile(), dscp=34)
        listing = in_ns(made.far, "nft", "list", "counters", "table", "inet", "pw").stdout
        assert "packets 2 " in listing.split("counter tcp46")[1].split("}")[0], listing
        assert "packets 2 " in listing.split("counter udp34")[1].split("}")[0], listing
