"""DNS probe: A / AAAA lookups of one name at a resolver, over UDP (dnspython).

Each attempt sends one query from a connected, pinned, DSCP-marked socket
and waits for the resolver's answer to it (stray datagrams and answers to
other queries are skipped). An answer with an rcode other than NOERROR is
`dns-error` (the rcode in the detail, e.g. NXDOMAIN); a NOERROR answer
without a record of the asked type, or without any of `expect-address` when
that is set, is `bad-reply`, and so is an answer that does not parse; no
answer within the attempt timeout is `timeout`; ICMP errors of the resolver
are `unreachable`. An ok attempt's latency, from right before the send to the
kernel's receive timestamp, is its time to establishment.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import time

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from agents.probe.base import Target, attempt_timeout, spaced_attempts
from agents.probe.sockopts import SO_TIMESTAMPNS, pinned_socket, receive_datagram
from schemas.probekinds import DnsProbeProfile
from schemas.wire import Measurement, Outcome

_UNREACHABLE = {
    errno.ECONNREFUSED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EHOSTDOWN,
    errno.ENETDOWN,
}


def _addresses(answer: dns.message.Message, rdtype: dns.rdatatype.RdataType) -> set[str]:
    """The addresses of the answer's records of `rdtype`, normalised."""
    return {
        str(ipaddress.ip_address(record.address))
        for rrset in answer.answer
        if rrset.rdtype == rdtype
        for record in rrset
    }


def _verdict(profile: DnsProbeProfile, answer: dns.message.Message) -> tuple[Outcome, str]:
    """(outcome, detail) of a parsed answer to our query."""
    rcode = answer.rcode()
    if rcode != dns.rcode.NOERROR:
        return "dns-error", f"rcode {dns.rcode.to_text(rcode)}"
    found = _addresses(answer, dns.rdatatype.from_text(profile.record_type))
    if not found:
        return "bad-reply", f"no {profile.record_type} record for {profile.query_name}"
    expected = {str(ipaddress.ip_address(a)) for a in profile.expect_address}
    if expected and not expected & found:
        return "bad-reply", f"answer {sorted(found)} has none of {sorted(expected)}"
    return "ok", ""


async def _answer(sock: socket.socket, query: dns.message.Message) -> tuple[bytes, int]:
    """The first datagram that parses as an answer to `query`, and its arrival time."""
    while True:
        data, received_ns = await receive_datagram(sock)
        try:
            if query.is_response(dns.message.from_wire(data)):
                return data, received_ns
        except dns.exception.DNSException:
            return data, received_ns


async def exchange_dns(target: Target, profile: DnsProbeProfile, timeout: float) -> Measurement:
    """One query / answer exchange with the resolver, waiting up to `timeout` s."""
    query = dns.message.make_query(profile.query_name, profile.record_type)
    sent_at = time.time()
    try:
        sock = pinned_socket(target, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError as exc:
        return target.measurement("dns", sent_at, "send-failed", detail=str(exc))
    try:
        try:
            sock.connect((target.address, target.port or profile.port))
            sent_ns = time.time_ns()
            sock.send(query.to_wire())
            async with asyncio.timeout(timeout):
                data, received_ns = await _answer(sock, query)
        except TimeoutError:
            return target.measurement("dns", sent_at, "timeout")
        except OSError as exc:
            outcome: Outcome = "unreachable" if exc.errno in _UNREACHABLE else "send-failed"
            return target.measurement("dns", sent_at, outcome, detail=str(exc))
    finally:
        sock.close()
    try:
        verdict, detail = _verdict(profile, dns.message.from_wire(data))
    except dns.exception.DNSException as exc:
        verdict, detail = "bad-reply", f"answer does not parse: {exc}"
    elapsed_ms = max(received_ns - sent_ns, 0) / 1e6
    return target.measurement("dns", sent_at, verdict, elapsed_ms, detail=detail[:200])


async def probe_dns(target: Target, profile: DnsProbeProfile, deadline: float) -> list[Measurement]:
    """number-of-attempts lookups at (target.address, port), spaced over probe-duration."""
    return await spaced_attempts(
        profile.number_of_attempts,
        profile.probe_duration,
        lambda: exchange_dns(target, profile, attempt_timeout(profile.probe_duration, deadline)),
    )
