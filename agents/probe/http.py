"""HTTP(S) probe with the router's http-probe-profile semantics.

number-of-attempts GET requests to the profile's `url`, spaced and each
limited to probe-duration / number-of-attempts (the per-attempt timeout).
The host name is resolved first and timed (`Measurement.dns_ms`); the
request then goes to the resolved address with the original Host header and
TLS server name, over a connection pinned to the route (SO_BINDTODEVICE /
source address) and marked with the class's DSCP. A status code in
`valid-status-code` is `ok` (latency = request to complete response),
otherwise `http-status`; the code is in `Measurement.status_code`.
`up-delay-timer` and the SLA (max-jitter, average-rtt, max-loss) are judged
downstream from these measurements.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from urllib.parse import urlsplit, urlunsplit

import httpx

from agents.probe.base import Target, remaining
from agents.probe.sockopts import family_of, tos_option
from agents.probe.tcp import outcome_of
from agents.probe.tls import client_context
from schemas.probekinds import HttpProbeProfile
from schemas.wire import Measurement, Outcome


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _resolve(host: str, port: int) -> tuple[str, float | None]:
    """(address, DNS time in ms or None for an IP literal)."""
    if _is_ip(host):
        return host, None
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    elapsed = (time.perf_counter() - started) * 1000
    return str(infos[0][4][0]), elapsed


def _transport_error(exc: httpx.TransportError) -> tuple[Outcome, str]:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout", str(exc) or type(exc).__name__
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return "tls-cert-error", str(cause.verify_message)
        if isinstance(cause, ssl.SSLError):
            return "tls-handshake-error", str(cause)
        if isinstance(cause, OSError) and cause.errno is not None:
            return outcome_of(cause), str(cause)
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    if "refused" in text.lower():
        return "refused", text
    if "reset" in text.lower():
        return "reset", text
    return "error", text or type(exc).__name__


async def _attempt(
    client: httpx.AsyncClient,
    target: Target,
    profile: HttpProbeProfile,
    delay: float,
    timeout: float,
    deadline: float,
) -> Measurement:
    if delay > 0:
        await asyncio.sleep(delay)
    sent_at = time.time()
    parts = urlsplit(profile.url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    limit = max(min(timeout, remaining(deadline)), 0.001)
    try:
        async with asyncio.timeout(limit):
            address, dns_ms = await _resolve(host, port)
    except (TimeoutError, OSError) as exc:
        return target.measurement("http", sent_at, "dns-error", detail=str(exc) or "timeout")
    netloc = f"[{address}]" if ":" in address else address
    if parts.port:
        netloc += f":{parts.port}"
    url = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    extensions = {"sni_hostname": host} if parts.scheme == "https" and not _is_ip(host) else {}
    started = time.perf_counter()
    try:
        response = await client.get(
            url,
            headers={"Host": parts.netloc.rpartition("@")[2], "Connection": "close"},
            extensions=extensions,
            timeout=max(min(timeout, remaining(deadline)), 0.001),
        )
    except httpx.TransportError as exc:
        outcome, detail = _transport_error(exc)
        return target.measurement("http", sent_at, outcome, dns_ms=dns_ms, detail=detail)
    elapsed_ms = (time.perf_counter() - started) * 1000
    status = response.status_code
    if status in profile.valid_status_code:
        return target.measurement(
            "http", sent_at, "ok", elapsed_ms, status_code=status, dns_ms=dns_ms
        )
    return target.measurement(
        "http",
        sent_at,
        "http-status",
        status_code=status,
        dns_ms=dns_ms,
        detail=f"status {status} not in {profile.valid_status_code}",
    )


def _client(target: Target, profile: HttpProbeProfile) -> httpx.AsyncClient:
    host = urlsplit(profile.url).hostname or "127.0.0.1"
    options: list[tuple[int, int, int] | tuple[int, int, bytes | bytearray]] = [
        tos_option(family_of(host), target.dscp)
    ]
    if target.interface:
        options.append((socket.SOL_SOCKET, socket.SO_BINDTODEVICE, target.interface.encode()))
    transport = httpx.AsyncHTTPTransport(
        verify=client_context(profile.accept_self_signed),
        local_address=target.source_address,
        socket_options=options,
        retries=0,
    )
    return httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False)


async def probe_http(
    target: Target, profile: HttpProbeProfile, deadline: float
) -> list[Measurement]:
    """number-of-attempts GETs of profile.url, each limited to duration / attempts."""
    per_attempt = profile.probe_duration / profile.number_of_attempts
    started = time.monotonic()
    async with _client(target, profile) as client:
        results: list[Measurement] = []
        for index in range(profile.number_of_attempts):
            delay = started + index * per_attempt - time.monotonic()
            results.append(await _attempt(client, target, profile, delay, per_attempt, deadline))
        return results
