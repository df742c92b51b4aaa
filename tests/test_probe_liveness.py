"""Datapath liveness check: every same-family pair must answer; mixed families skipped."""

from __future__ import annotations

import time

from agents.nsexec import run_in_netns
from agents.probe.datapath_check import Connection, IcmpLivenessCheck, LivenessCheck
from agents.probe.icmp_engine import IcmpEngine
from tests.netns import nft, requires_nft, requires_root
from tests.test_probe_beds import FAR_1, FAR_SERVICE, NEAR_1, bed


def test_pairs_skip_mixed_families() -> None:
    connection = Connection(source=["127.0.0.1", "::1"], destination=["127.0.0.2", "::1"])
    assert connection.pairs() == [("127.0.0.1", "127.0.0.2"), ("::1", "::1")]
    assert Connection(source=["::1"], destination=["127.0.0.1"]).pairs() == []


@requires_root
async def test_loopback_connection_is_alive_and_answer_comes_early() -> None:
    engine = IcmpEngine()
    try:
        check: LivenessCheck = IcmpLivenessCheck(engine)
        started = time.monotonic()
        alive = await check(
            started + 1.0, Connection(source=["127.0.0.1", "::1"], destination=["127.0.0.3", "::1"])
        )
        assert alive is True
        assert time.monotonic() - started < 0.9  # returns once every pair answered
        assert (
            await check(
                time.monotonic() + 0.5, Connection(source=["::1"], destination=["127.0.0.1"])
            )
            is False
        )
    finally:
        engine.close()


@requires_root
@requires_nft
async def test_one_dead_pair_makes_the_connection_dead() -> None:
    with bed() as made:
        nft(
            made.far,
            "table inet pw {\n  chain in {\n    type filter hook input priority 0;\n"
            f"    ip daddr {FAR_SERVICE} drop\n  }}\n}}\n",
        )

        async def check_both() -> tuple[bool, bool]:
            engine = IcmpEngine()
            try:
                check = IcmpLivenessCheck(engine, pings=3)
                healthy = await check(
                    time.monotonic() + 0.6, Connection(source=[NEAR_1], destination=[FAR_1])
                )
                broken = await check(
                    time.monotonic() + 0.6,
                    Connection(source=[NEAR_1], destination=[FAR_1, FAR_SERVICE]),
                )
                return healthy, broken
            finally:
                engine.close()

        assert await run_in_netns(made.near, check_both) == (True, False)
