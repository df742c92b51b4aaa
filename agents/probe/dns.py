"""DNS probe: A / AAAA lookups of one name at a resolver, over UDP (dnspython).

Each attempt sends one query (`agents.probe.datagram`) and waits for the
resolver's answer to it (answers to other queries are skipped). An answer
with an rcode other than NOERROR is `dns-error` (the rcode in the detail,
e.g. NXDOMAIN); a NOERROR answer without a record of the asked type, or
without any of `expect-address` when that is set, is `bad-reply`, and so is
an answer that does not parse; no answer within the attempt timeout is
`timeout`; ICMP errors of the resolver are `unreachable`. An ok attempt's
latency, the query-to-answer time, is its time to establishment.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from agents.probe.base import Target, attempt_timeout, spaced_attempts
from agents.probe.datagram import request_reply
from schemas.probekinds import DnsProbeProfile
from schemas.wire import Measurement, Outcome


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


def _answers(query: dns.message.Message) -> Callable[[bytes], bool]:
    """Whether a datagram is the answer to `query` (one that does not parse is taken,
    and judged `bad-reply`)."""

    def answers(data: bytes) -> bool:
        try:
            return bool(query.is_response(dns.message.from_wire(data)))
        except dns.exception.DNSException:
            return True

    return answers


async def exchange_dns(target: Target, profile: DnsProbeProfile, timeout: float) -> Measurement:
    """One query / answer exchange with the resolver, waiting up to `timeout` s."""
    query = dns.message.make_query(profile.query_name, profile.record_type)
    port = target.port or profile.port
    got = await request_reply(target, "dns", port, query.to_wire(), timeout, _answers(query))
    if isinstance(got, Measurement):
        return got
    try:
        verdict, detail = _verdict(profile, dns.message.from_wire(got.data))
    except dns.exception.DNSException as exc:
        verdict, detail = "bad-reply", f"answer does not parse: {exc}"
    return target.measurement("dns", got.sent_at, verdict, got.elapsed_ms, detail=detail[:200])


async def probe_dns(target: Target, profile: DnsProbeProfile, deadline: float) -> list[Measurement]:
    """number-of-attempts lookups at (target.address, port), spaced over probe-duration."""
    return await spaced_attempts(
        profile.number_of_attempts,
        profile.probe_duration,
        lambda: exchange_dns(target, profile, attempt_timeout(profile.probe_duration, deadline)),
    )
