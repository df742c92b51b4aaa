"""TLS and HTTP probes against real servers on loopback: self-signed
certificates (made with the openssl CLI), handshake failures, status codes,
DNS timing."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agents.probe.base import Target
from agents.probe.http import probe_http
from agents.probe.tls import probe_tls
from schemas.probekinds import HttpProbeProfile, TlsProbeProfile

requires_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl CLI")


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@contextlib.asynccontextmanager
async def serve(handler: object, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_context)  # type: ignore[arg-type]
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        await reader.read(100)
    writer.close()


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"this is not TLS at all\r\n" * 20)
    with contextlib.suppress(Exception):
        await writer.drain()
    writer.close()


async def http_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request = await reader.readuntil(b"\r\n\r\n")
    path = request.split(b" ")[1].decode()
    status = int(path.strip("/") or 200)
    writer.write(
        f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".encode()
    )
    await writer.drain()
    writer.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def tls_profile(port: int, **kwargs: object) -> TlsProbeProfile:
    return TlsProbeProfile(
        probe_address=["127.0.0.1"],
        port=port,
        number_of_attempts=2,
        probe_duration=1,
        server_name="localhost",
        **kwargs,  # type: ignore[arg-type]
    )


async def tls_outcomes(profile: TlsProbeProfile) -> list[tuple[str, float | None]]:
    target = Target(address="127.0.0.1", probe="tls", port=profile.port)
    items = await probe_tls(target, profile, time.monotonic() + 3)
    assert all(m.protocol == "tls" for m in items)
    return [(m.outcome, m.latency_ms) for m in items]


@requires_openssl
async def test_tls_self_signed_accepted_only_when_configured(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with serve(closing, context) as port:
        accepted = await tls_outcomes(tls_profile(port, accept_self_signed=True))
        assert [o for o, _ in accepted] == ["ok", "ok"]
        assert all(latency is not None and latency > 0 for _, latency in accepted)
        refused = await tls_outcomes(tls_profile(port))
        assert [o for o, _ in refused] == ["tls-cert-error", "tls-cert-error"]
        # a private CA that signed it makes it verifiable without accepting self-signed
        trusted = await tls_outcomes(tls_profile(port, ca_file=str(cert)))
        assert [o for o, _ in trusted] == ["ok", "ok"]


async def test_tls_handshake_error_and_tcp_failures() -> None:
    async with serve(garbage) as port:
        broken = await tls_outcomes(tls_profile(port, accept_self_signed=True))
        assert [o for o, _ in broken] == ["tls-handshake-error", "tls-handshake-error"]
    refused = await tls_outcomes(tls_profile(closed_port(), accept_self_signed=True))
    assert [o for o, _ in refused] == ["refused", "refused"]


def http_profile(url: str, **kwargs: object) -> HttpProbeProfile:
    return HttpProbeProfile(url=url, number_of_attempts=2, probe_duration=1, **kwargs)  # type: ignore[arg-type]


async def test_http_status_codes_and_dns_time() -> None:
    async with serve(http_handler) as port:
        target = Target(address=f"http://127.0.0.1:{port}/", probe="web")
        ok = await probe_http(
            target, http_profile(f"http://127.0.0.1:{port}/200"), time.monotonic() + 3
        )
        assert [(m.outcome, m.status_code) for m in ok] == [("ok", 200), ("ok", 200)]
        assert all(m.protocol == "http" and m.latency_ms is not None for m in ok)
        assert all(m.dns_ms is None for m in ok)  # an IP literal needs no resolution

        not_found = await probe_http(
            target, http_profile(f"http://localhost:{port}/404"), time.monotonic() + 3
        )
        assert [(m.outcome, m.status_code) for m in not_found] == [
            ("http-status", 404),
            ("http-status", 404),
        ]
        assert all(m.dns_ms is not None and m.dns_ms >= 0 for m in not_found)

        allowed = await probe_http(
            target,
            http_profile(f"http://127.0.0.1:{port}/503", valid_status_code=[200, 503]),
            time.monotonic() + 3,
        )
        assert [m.outcome for m in allowed] == ["ok", "ok"]

    refused = await probe_http(
        Target(address="x", probe="web"),
        http_profile(f"http://127.0.0.1:{closed_port()}/"),
        time.monotonic() + 3,
    )
    assert [m.outcome for m in refused] == ["refused", "refused"]


async def test_http_per_attempt_timeout_is_duration_over_attempts() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    async with serve(silent) as port:
        started = time.monotonic()
        items = await probe_http(
            Target(address="x", probe="web"),
            HttpProbeProfile(
                url=f"http://127.0.0.1:{port}/", number_of_attempts=4, probe_duration=1
            ),
            started + 5,
        )
        elapsed = time.monotonic() - started
    assert [m.outcome for m in items] == ["timeout"] * 4
    # four attempts of 250 ms each, one after the other: about 1 s, far from 4 x 1 s
    assert elapsed < 2.5
