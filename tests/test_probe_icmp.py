"""ICMP probe and engine: loopback RTTs, loss under real random drops, the
unprivileged datagram mode, DSCP on the wire and per-route pinning."""

from __future__ import annotations

import itertools
import socket
import time

import pytest

from agents.nsexec import run_in_netns
from agents.probe.address_sla import summarize
from agents.probe.base import Target
from agents.probe.icmp import probe_icmp
from agents.probe.icmp_engine import IcmpEngine, IcmpUnavailable
from schemas.config import LatencySla, SlaMetrics
from schemas.probekinds import IcmpProbeProfile
from schemas.wire import Measurement
from tests.netns import in_ns, nft, requires_iptables, requires_nft, requires_root
from tests.test_probe_beds import FAR_1, FAR_SERVICE, bed


def profile(attempts: int = 4, duration: float = 1.0, **kwargs: object) -> IcmpProbeProfile:
    return IcmpProbeProfile(
        probe_address=["127.0.0.1"],
        number_of_attempts=attempts,
        probe_duration=duration,
        **kwargs,  # type: ignore[arg-type]
    )


@requires_root
async def test_icmp_probe_loopback_v4_and_v6_attempts_spaced_over_duration() -> None:
    engine = IcmpEngine()
    try:
        for address in ("127.0.0.1", "::1"):
            target = Target(
                address=address, probe="ping", traffic_class="high", dscp=46, icmp=engine
            )
            started = time.monotonic()
            items = await probe_icmp(target, profile(attempts=4, duration=1.0), started + 5)
            assert [m.outcome for m in items] == ["ok"] * 4
            assert all(m.protocol == "icmp" and m.destination == address for m in items)
            assert all(m.traffic_class == "high" and m.probe == "ping" for m in items)
            assert all(m.latency_ms is not None and 0 < m.latency_ms < 50 for m in items)
            sends = [m.ts for m in items]
            gaps = [b - a for a, b in itertools.pairwise(sends)]
            # attempts spaced duration / attempts = 250 ms apart
            assert all(0.2 < gap < 0.4 for gap in gaps), gaps
        assert engine.counters.success == 8
    finally:
        engine.close()


@requires_root
async def test_icmp_engine_matches_many_concurrent_replies_on_one_socket() -> None:
    import asyncio

    engine = IcmpEngine()
    try:
        addresses = [f"127.0.{i // 250}.{i % 250 + 1}" for i in range(300)]
        results = await asyncio.gather(*(engine.ping(a, timeout=2.0) for a in addresses))
        assert all(r.outcome == "ok" for r in results)
        assert len(engine._sockets) == 1  # one shared socket, not one per ping
    finally:
        engine.close()


def test_sla_summary_names_every_exceeded_test() -> None:
    def m(outcome: str, latency: float | None) -> Measurement:
        return Measurement(ts=1.0, protocol="icmp", outcome=outcome, latency_ms=latency)  # type: ignore[arg-type]

    sla = SlaMetrics(max_loss=10, latency=LatencySla(max=100, mean=50), max_jitter=20)
    good = summarize("a", [m("ok", 10), m("ok", 12), m("ok", 11), m("ok", 10)], sla)
    assert good.meets_sla and good.loss_pct == 0 and good.latency_max_ms == 12
    bad = summarize("a", [m("ok", 10), m("ok", 150), m("timeout", None), m("ok", 90)], sla)
    assert bad.loss_pct == 25
    assert bad.exceeded == ["max-loss", "max-latency", "mean-latency", "max-jitter"]


@requires_root
@requires_iptables
async def test_random_30_percent_drop_gives_loss_within_tolerance() -> None:
    """600 pings through `iptables -m statistic --probability 0.3`: loss 30 % +- 8 points.

    Binomial sd at n=600 is 1.9 points, so +-8 is over 4 sd: fails only when the
    prober miscounts.
    """
    with bed() as made:
        in_ns(
            made.far,
            "iptables",
            "-A",
            "INPUT",
            "-p",
            "icmp",
            "--icmp-type",
            "echo-request",
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            "0.3",
            "-j",
            "DROP",
        )

        async def measure() -> list[str]:
            import asyncio

            engine = IcmpEngine()
            try:
                outcomes: list[str] = []
                for _ in range(6):
                    batch = await asyncio.gather(
                        *(engine.ping(FAR_1, timeout=0.5) for _ in range(100))
                    )
                    outcomes.extend(r.outcome for r in batch)
                return outcomes
            finally:
                engine.close()

        outcomes = await run_in_netns(made.near, measure)
        loss = 100 * outcomes.count("timeout") / len(outcomes)
        assert set(outcomes) <= {"ok", "timeout"}
        assert 22 <= loss <= 38, loss


@requires_root
async def test_datagram_icmp_when_unprivileged_and_clear_error_when_not_allowed() -> None:
    with bed() as made:

        async def ping_dgram() -> tuple[str, str]:
            engine = IcmpEngine(privileged=False)
            try:
                result = await engine.ping(FAR_1, timeout=1.0)
                return result.outcome, engine.mode()
            finally:
                engine.close()

        # ping_group_range is per namespace and defaults to "1 0": nobody may
        with pytest.raises(IcmpUnavailable, match="ping_group_range"):
            await run_in_netns(made.near, ping_dgram)
        in_ns(made.near, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
        assert await run_in_netns(made.near, ping_dgram) == ("ok", "datagram")


@requires_root
@requires_nft
async def test_each_class_dscp_seen_on_the_wire() -> None:
    classes = {"high": 46, "medium": 34, "low": 18, "best-effort": 0}
    with bed() as made:
        counters = "\n".join(f"  counter c{dscp} {{}}" for dscp in classes.values())
        rules = "\n".join(
            f"    icmp type echo-request ip dscp {dscp} counter name c{dscp}"
            for dscp in classes.values()
        )
        nft(
            made.far,
            f"table inet pw {{\n{counters}\n  chain in {{\n"
            f"    type filter hook input priority 0;\n{rules}\n  }}\n}}\n",
        )

        async def send() -> list[str]:
            engine = IcmpEngine()
            try:
                outcomes: list[str] = []
                for name, dscp in classes.items():
                    target = Target(address=FAR_1, traffic_class=name, dscp=dscp, icmp=engine)  # type: ignore[arg-type]
                    items = await probe_icmp(
                        target, profile(attempts=3, duration=1.0), time.monotonic() + 3
                    )
                    outcomes.extend(m.outcome for m in items)
                return outcomes
            finally:
                engine.close()

        assert await run_in_netns(made.near, send) == ["ok"] * 12
        listing = in_ns(made.far, "nft", "list", "counters", "table", "inet", "pw").stdout
        for dscp in classes.values():
            block = listing.split(f"counter c{dscp} ")[1].split("}")[0]
            assert "packets 3 " in block, (dscp, listing)


@requires_root
@requires_nft
async def test_two_routes_to_one_destination_measured_separately() -> None:
    """Route 1 over link 1 is healthy; link 2 drops everything: only route 2 loses."""
    with bed(links=2) as made:
        nft(
            made.far,
            "table inet pw {\n  chain in {\n    type filter hook input priority 0;\n"
            f'    iifname "{made.far_ifs[1]}" counter drop\n'
            f'    iifname "{made.far_ifs[0]}" counter accept\n  }}\n}}\n',
        )

        async def both() -> dict[str, list[str]]:
            engine = IcmpEngine()
            try:
                found: dict[str, list[str]] = {}
                for route, interface in (("r1", made.near_ifs[0]), ("r2", made.near_ifs[1])):
                    target = Target(
                        address=FAR_SERVICE, probe=route, interface=interface, icmp=engine
                    )
                    items = await probe_icmp(
                        target, profile(attempts=4, duration=1.0), time.monotonic() + 3
                    )
                    found[route] = [m.outcome for m in items]
                return found
            finally:
                engine.close()

        found = await run_in_netns(made.near, both)
        assert found == {"r1": ["ok"] * 4, "r2": ["timeout"] * 4}
        listing = in_ns(made.far, "nft", "list", "ruleset").stdout
        assert listing.count("packets 4 ") == 2, listing  # 4 in on each link


def test_family_detection() -> None:
    from agents.probe.sockopts import family_of

    assert family_of("::1") == socket.AF_INET6
    assert family_of("127.0.0.1") == socket.AF_INET
