"""TLS probe: handshake time after TCP establishment.

The TCP connect is pinned and DSCP-marked like the TCP probe; its failures
map to the TCP outcomes. The latency is the TLS handshake alone. Certificate
verification failures are `tls-cert-error`, other handshake failures
`tls-handshake-error`. `accept-self-signed` skips verification (for test
beds and self-signed services); `ca-file` verifies against a private CA.
"""

from __future__ import annotations

import asyncio
import ssl
import time

from agents.probe.base import Target, remaining, spaced_attempts
from agents.probe.tcp import connect, outcome_of
from schemas.probekinds import TlsProbeProfile
from schemas.wire import Measurement


def client_context(accept_self_signed: bool, ca_file: str | None = None) -> ssl.SSLContext:
    """A client SSLContext: verifying, or not when self-signed is accepted."""
    context = ssl.create_default_context(cafile=ca_file)
    if accept_self_signed:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _attempt(
    target: Target,
    profile: TlsProbeProfile,
    context: ssl.SSLContext,
    deadline: float,
) -> Measurement:
    loop = asyncio.get_running_loop()
    sent_at = time.time()
    attempt_deadline = time.monotonic() + min(profile.probe_duration, remaining(deadline))
    try:
        sock = await connect(target, max(attempt_deadline - time.monotonic(), 0.001))
    except TimeoutError:
        return target.measurement("tls", sent_at, "timeout")
    except OSError as exc:
        return target.measurement("tls", sent_at, outcome_of(exc), detail=str(exc))
    started = time.perf_counter()
    try:
        async with asyncio.timeout(max(attempt_deadline - time.monotonic(), 0.001)):
            transport, _protocol = await loop.create_connection(
                asyncio.Protocol,
                sock=sock,
                ssl=context,
                server_hostname=profile.server_name or target.address,
            )
    except TimeoutError:
        sock.close()
        return target.measurement("tls", sent_at, "timeout", detail="tls handshake timed out")
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        return target.measurement("tls", sent_at, "tls-cert-error", detail=exc.verify_message)
    except ssl.SSLError as exc:
        sock.close()
        return target.measurement("tls", sent_at, "tls-handshake-error", detail=str(exc))
    except OSError as exc:
        sock.close()
        return target.measurement("tls", sent_at, outcome_of(exc), detail=str(exc))
    elapsed_ms = (time.perf_counter() - started) * 1000
    transport.abort()
    return target.measurement("tls", sent_at, "ok", elapsed_ms)


async def probe_tls(target: Target, profile: TlsProbeProfile, deadline: float) -> list[Measurement]:
    """number-of-attempts TLS handshakes with (target.address, target.port)."""
    context = client_context(profile.accept_self_signed, profile.ca_file)
    return await spaced_attempts(
        profile.number_of_attempts,
        profile.probe_duration,
        lambda: _attempt(target, profile, context, deadline),
    )
