"""Namespace beds for the passive tests: a near namespace (clients, conntrack
followed there) and a far namespace (servers), joined by one or two veth
pairs. Link 1 is the default way to FAR_SERVICE; traffic from NEAR_2 takes
link 2 (policy routing), so the kernel's route lookup tells the links apart.

Addresses live only inside these namespaces, which have no route out.
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from agents.nsexec import socket_in_netns
from agents.passive.events import decode_events
from agents.passive.follower import open_conntrack_socket
from tests.netns import in_ns, namespaces, nft, requires_nft, requires_root, veth

NEAR_1 = "10.77.1.1"
NEAR_2 = "10.77.2.1"
FAR_SERVICE = "10.77.9.9"
TCP_PORT = 8080
CLOSED_PORT = 8081
DROPPED_PORT = 8082
UDP_CLOSED_PORT = 9999
UDP_ECHO_PORT = 9000

#: A rule that makes the kernel track connections in the namespace (nothing is filtered).
CONNTRACK_ON = """table inet pwtrack {
  chain out {
    type filter hook output priority 0;
    ct state new counter
  }
}
"""
#: The kernel-side event reduction of docs/passive.md (locally opened sessions).
EVENT_MASK = """table inet pwevents {
  chain out {
    type filter hook output priority -150;
    meta l4proto tcp ct state new ct event set new,assured,destroy
    meta l4proto udp ct state new ct event set new,reply,destroy
  }
}
"""


def _kernel_version() -> tuple[int, int]:
    found = re.match(r"(\d+)\.(\d+)", platform.release())
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


#: CTA_TIMESTAMP_EVENT (the kernel's time of each conntrack event) came with Linux 6.14.
requires_event_timestamps = pytest.mark.skipif(
    _kernel_version() < (6, 14), reason="conntrack event timestamps need Linux 6.14 or later"
)


@dataclass
class PassiveBed:
    near: str
    far: str
    near_ifs: list[str] = field(default_factory=list)
    far_ifs: list[str] = field(default_factory=list)


@contextlib.contextmanager
def passive_bed(
    links: int = 1, syn_sent_timeout: int = 1, *, event_mask: bool = False
) -> Iterator[PassiveBed]:
    """near <-> far over `links` veth pairs, conntrack on in near with timestamped events
    (and with `event_mask` only the events the agent needs), a drop rule in far."""
    with namespaces("pn", "pf") as (near, far):
        made = PassiveBed(near, far)
        for index in range(1, links + 1):
            near_if, far_if = veth(near, f"10.77.{index}.1/24", far, f"10.77.{index}.2/24")
            made.near_ifs.append(near_if)
            made.far_ifs.append(far_if)
            gateway = f"10.77.{index}.2"
            if index == 1:
                in_ns(near, "ip", "route", "add", f"{FAR_SERVICE}/32", "via", gateway)
            else:
                table = str(100 + index)
                in_ns(
                    near, "ip", "route", "add", f"{FAR_SERVICE}/32", "via", gateway, "table", table
                )
                in_ns(near, "ip", "rule", "add", "from", f"10.77.{index}.1", "table", table)
        in_ns(far, "ip", "addr", "add", f"{FAR_SERVICE}/32", "dev", "lo")
        nft(near, CONNTRACK_ON)
        if event_mask:
            nft(near, EVENT_MASK)
        in_ns(near, "sysctl", "-qw", "net.netfilter.nf_conntrack_timestamp=1")
        nft(
            far,
            "table inet pwdrop {\n chain inp {\n  type filter hook input priority 0;\n"
            f"  tcp dport {DROPPED_PORT} drop\n }}\n}}\n",
        )
        in_ns(
            near,
            "sysctl",
            "-qw",
            f"net.netfilter.nf_conntrack_tcp_timeout_syn_sent={syn_sent_timeout}",
        )
        yield made


def far_listener(bed: PassiveBed, port: int = TCP_PORT, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket on FAR_SERVICE in the far namespace (the kernel completes
    handshakes without accept())."""
    sock = socket_in_netns(bed.far)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((FAR_SERVICE, port))
    sock.listen(backlog)
    return sock


def config_yaml(bed: PassiveBed, *, round_interval: float = 0.2, extra: str = "") -> str:
    """Service `web` on FAR_SERVICE with one route per link (node n1), passive on in near."""
    routes = "".join(
        f"      link{index}:\n"
        f"        next-hop: {{node: n1, interface: {name}, gateway-ip: 10.77.{index}.2}}\n"
        "        reachability-detection:\n"
        "          detection-window: 2\n"
        "          hold-down: 60\n"
        "          probe-type: disabled\n"
        "          reachability-profile: strict\n"
        "          min-samples: 5\n"
        for index, name in enumerate(bed.near_ifs, start=1)
    )
    return (
        f"passive: {{enabled: true, netns: {bed.near}, round-interval: {round_interval},"
        f" port-classes: {{{TCP_PORT}: high}}}}\n"
        "reachability-profiles:\n"
        "  strict:\n"
        "    tcp:\n"
        "      high: {acceptable-error-threshold: 25}\n"
        "      best-effort: {acceptable-error-threshold: 25}\n"
        f"{extra}"
        "services:\n"
        "  web:\n"
        f"    address: [{FAR_SERVICE}/32]\n"
        "    service-routes:\n"
        f"{routes}"
    )


@requires_root
@requires_nft
async def test_bed_delivers_conntrack_events_only_inside_the_namespace() -> None:
    with passive_bed() as bed:
        sock = open_conntrack_socket(bed.near)
        sock.setblocking(True)
        sock.settimeout(5)
        listener = far_listener(bed)
        try:

            def connect() -> None:
                client = socket_in_netns(bed.near)
                with client:
                    client.connect((FAR_SERVICE, TCP_PORT))

            await asyncio.to_thread(connect)
            event = decode_events(sock.recv(65536))[0]
            assert event.kind == "new"
            assert (event.source, event.destination, event.destination_port) == (
                NEAR_1,
                FAR_SERVICE,
                TCP_PORT,
            )
        finally:
            listener.close()
            sock.close()
