"""Namespace beds for the probe tests: a near namespace (where probes run) and a
far namespace (the targets), joined by one or two veth pairs.

Addresses live only inside these namespaces, which have no route out.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

from agents.nsexec import run_in_netns, socket_in_netns
from agents.probe.icmp_engine import IcmpEngine
from tests.netns import in_ns, namespaces, requires_root, veth

NEAR_1 = "10.77.1.1"
FAR_1 = "10.77.1.2"
NEAR_2 = "10.77.2.1"
FAR_2 = "10.77.2.2"
#: An address on the far namespace's loopback, reachable over both links.
FAR_SERVICE = "10.77.9.9"


@dataclass
class Bed:
    near: str
    far: str
    near_ifs: list[str] = field(default_factory=list)
    far_ifs: list[str] = field(default_factory=list)


@contextlib.contextmanager
def bed(links: int = 1) -> Iterator[Bed]:
    """near <-> far over `links` veth pairs; FAR_SERVICE routed over each (link 1 preferred)."""
    with namespaces("near", "far") as (near, far):
        made = Bed(near, far)
        for index in range(1, links + 1):
            near_if, far_if = veth(near, f"10.77.{index}.1/24", far, f"10.77.{index}.2/24")
            made.near_ifs.append(near_if)
            made.far_ifs.append(far_if)
            in_ns(
                near,
                "ip",
                "route",
                "add",
                f"{FAR_SERVICE}/32",
                "via",
                f"10.77.{index}.2",
                "dev",
                near_if,
                "metric",
                str(100 * index),
            )
        in_ns(far, "ip", "addr", "add", f"{FAR_SERVICE}/32", "dev", "lo")
        yield made


def far_socket(made: Bed, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket in the far namespace (serve it from the test's own loop)."""
    return socket_in_netns(made.far, socket.AF_INET, kind)


@requires_root
async def test_bed_far_service_answers_only_inside_the_bed() -> None:
    with bed() as made:

        async def ping() -> str:
            engine = IcmpEngine()
            try:
                return (await engine.ping(FAR_SERVICE, timeout=1.0)).outcome
            finally:
                engine.close()

        assert await run_in_netns(made.near, ping) == "ok"
