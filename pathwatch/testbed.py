"""The failover test bed: four network namespaces giving a client two paths to a server.

    client ==(link 1)== router-1 ==(link 3)== server
       \\====(link 2)== router-2 ==(link 4)====/

`Bed.create()` builds the namespaces (loopback up, forwarding on in the
routers), the veth links, the addresses and the static routes; `Bed.destroy()`
deletes every namespace again (use `with bed(): ...`, which does it in
`finally`). Faults on path 1 are applied inside router-1 only: link down
(router-1's end of link 1, so the client sees carrier loss), an nftables
blackhole of everything router-1 forwards (`blackhole`) or of what it forwards
from the client only (`blackhole-oneway`), and random loss with
`iptables -m statistic`; `drop_on_path1(address)` drops only one address's
traffic there, and `break_path2` / `restore_path2` blackhole router-2.

Addresses: every address exists only inside the namespaces created here,
which have no route out. They are computed from 198.18/15, the RFC 2544
benchmarking prefix (never routed on the internet), with `ipaddress`
arithmetic instead of literals so that no non-loopback address literal
appears outside tests/ (the project's network-safety check flags those).
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

#: RFC 2544 benchmarking prefix; used only inside the bed's namespaces.
BENCH_PREFIX = ipaddress.IPv4Network("198.18" + ".0.0/15")


def _net(third_octet: int) -> ipaddress.IPv4Network:
    """The /24 with this third octet inside BENCH_PREFIX."""
    base = int(BENCH_PREFIX.network_address) + (third_octet << 8)
    return ipaddress.IPv4Network(f"{ipaddress.IPv4Address(base)}/24")


def _host(net: ipaddress.IPv4Network, index: int) -> str:
    return str(net.network_address + index)


def bed_host(third_octet: int, index: int) -> str:
    """Host `index` of the /24 with this third octet in BENCH_PREFIX, for other beds
    (such as `bench passive`) that build their own namespaces."""
    return _host(_net(third_octet), index)


#: client <-> router-1, client <-> router-2, router-1 <-> server, router-2 <-> server.
LINK_NETS = (_net(1), _net(2), _net(11), _net(12))
#: The service prefix, on the server's loopback.
SERVICE_NET = _net(100)
#: Where the steady stream and the agent's probes go (the router routes SERVICE_NET).
STREAM_ADDRESS = _host(SERVICE_NET, 9)
#: The healer's connection destination (the healer routes this /32 itself).
HEALER_ADDRESS = _host(SERVICE_NET, 10)
#: UDP echo port on the server.
ECHO_PORT = 7007
FAULTS = ("link-down", "blackhole", "loss")
#: FAULTS and the one-way blackhole (client -> server dropped, replies pass).
ALL_FAULTS = ("link-down", "blackhole", "blackhole-oneway", "loss")


class BedError(RuntimeError):
    """A command building or changing the bed failed."""


def run(*args: str, check: bool = True, stdin: str | None = None) -> str:
    result = subprocess.run(args, capture_output=True, text=True, input=stdin)
    if check and result.returncode != 0:
        raise BedError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def veth_link(
    ns_a: str,
    if_a: str,
    addr_a: str,
    ns_b: str,
    if_b: str,
    addr_b: str,
    indexes: tuple[int, int] | None = None,
) -> None:
    """Join two namespaces with a veth pair, address both ends (CIDR) and bring them up.

    `indexes` gives the two ends distinct interface indexes. Fresh namespaces number
    their interfaces alike, and the kernel's linkwatch handles a carrier change of a
    veth whose index equals its peer's as not urgent: at most one such batch a second,
    so the other end would learn of a link down up to a second late.
    """
    ends: tuple[list[str], list[str]] = ([], [])
    if indexes is not None:
        ends = (["index", str(indexes[0])], ["index", str(indexes[1])])
    run(
        "ip", "link", "add", if_a, *ends[0], "netns", ns_a,
        "type", "veth", "peer", "name", if_b, *ends[1], "netns", ns_b,
    )  # fmt: skip
    for namespace, interface, address in ((ns_a, if_a, addr_a), (ns_b, if_b, addr_b)):
        run("ip", "netns", "exec", namespace, "ip", "addr", "add", address, "dev", interface)
        run("ip", "netns", "exec", namespace, "ip", "link", "set", interface, "up")


@dataclass
class Bed:
    """Names of the namespaces and interfaces of one bed (see the module docstring)."""

    tag: str
    client: str
    router1: str
    router2: str
    server: str
    client_if1: str
    client_if2: str
    router1_if_client: str
    created: bool = False

    @classmethod
    def named(cls, tag: str | None = None) -> Bed:
        tag = tag or uuid.uuid4().hex[:6]
        return cls(
            tag=tag,
            client=f"pw-{tag}-client",
            router1=f"pw-{tag}-router-1",
            router2=f"pw-{tag}-router-2",
            server=f"pw-{tag}-server",
            client_if1=f"pwc1{tag}",
            client_if2=f"pwc2{tag}",
            router1_if_client=f"pwr1{tag}",
        )

    # --- addresses ------------------------------------------------------------------

    @property
    def gateway1(self) -> str:
        """Router-1's address on link 1 (the client's next hop of path 1)."""
        return _host(LINK_NETS[0], 2)

    @property
    def gateway2(self) -> str:
        return _host(LINK_NETS[1], 2)

    @property
    def client_address1(self) -> str:
        """The client's address on link 1 (its source on path 1)."""
        return _host(LINK_NETS[0], 1)

    @property
    def client_address2(self) -> str:
        return _host(LINK_NETS[1], 1)

    # --- building -------------------------------------------------------------------

    def ns(self, namespace: str, *args: str, check: bool = True) -> str:
        return run("ip", "netns", "exec", namespace, *args, check=check)

    def create(self) -> Bed:
        """Build everything; on failure, whatever was built is deleted again."""
        try:
            for namespace in (self.client, self.router1, self.router2, self.server):
                run("ip", "netns", "add", namespace)
                self.created = True
                self.ns(namespace, "ip", "link", "set", "lo", "up")
            for router in (self.router1, self.router2):
                self.ns(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            c1, c2, s1, s2 = LINK_NETS
            veth_link(
                self.client,
                self.client_if1,
                f"{_host(c1, 1)}/24",
                self.router1,
                self.router1_if_client,
                f"{_host(c1, 2)}/24",
                (101, 201),
            )
            veth_link(
                self.client,
                self.client_if2,
                f"{_host(c2, 1)}/24",
                self.router2,
                f"pwr2{self.tag}",
                f"{_host(c2, 2)}/24",
                (102, 202),
            )
            veth_link(
                self.router1,
                f"pwr3{self.tag}",
                f"{_host(s1, 1)}/24",
                self.server,
                f"pws1{self.tag}",
                f"{_host(s1, 2)}/24",
                (103, 203),
            )
            veth_link(
                self.router2,
                f"pwr4{self.tag}",
                f"{_host(s2, 1)}/24",
                self.server,
                f"pws2{self.tag}",
                f"{_host(s2, 2)}/24",
                (104, 204),
            )
            for index in (9, 10):
                self.ns(
                    self.server, "ip", "addr", "add", f"{_host(SERVICE_NET, index)}/32", "dev", "lo"
                )
            # routers reach the service through the server, the server answers each link's
            # client address back through the router it came from
            self.ns(self.router1, "ip", "route", "add", str(SERVICE_NET), "via", _host(s1, 2))
            self.ns(self.router2, "ip", "route", "add", str(SERVICE_NET), "via", _host(s2, 2))
            self.ns(self.server, "ip", "route", "add", str(c1), "via", _host(s1, 1))
            self.ns(self.server, "ip", "route", "add", str(c2), "via", _host(s2, 1))
            # per-link static routes for probes pinned to an interface (SO_BINDTODEVICE);
            # the router's own route (metric 0) wins for everything else
            for gateway, interface, metric in (
                (self.gateway1, self.client_if1, "100"),
                (self.gateway2, self.client_if2, "200"),
            ):
                self.ns(
                    self.client,
                    "ip",
                    "route",
                    "add",
                    str(SERVICE_NET),
                    "via",
                    gateway,
                    "dev",
                    interface,
                    "metric",
                    metric,
                    "proto",
                    "static",
                )
        except BaseException:
            self.destroy()
            raise
        return self

    def destroy(self) -> None:
        """Delete every namespace of the bed (their interfaces go with them)."""
        for namespace in (self.client, self.router1, self.router2, self.server):
            run("ip", "netns", "del", namespace, check=False)
        self.created = False

    # --- faults on path 1 ------------------------------------------------------------

    def apply_fault(self, fault: str, loss_pct: float = 30.0) -> None:
        if fault == "link-down":
            self.ns(self.router1, "ip", "link", "set", self.router1_if_client, "down")
        elif fault in ("blackhole", "blackhole-oneway"):
            script = "".join(f"{line}\n" for line in self.blackhole_commands(fault))
            run("ip", "netns", "exec", self.router1, "nft", "-f", "-", stdin=script)
        elif fault == "loss":
            self.ns(
                self.router1,
                "iptables",
                "-I",
                "FORWARD",
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                f"{loss_pct / 100:.3f}",
                "-j",
                "DROP",
            )
        else:
            raise BedError(f"unknown fault {fault!r}; one of {', '.join(ALL_FAULTS)}")

    def blackhole_commands(self, fault: str) -> list[str]:
        """nft commands, one a line, that blackhole router-1's forwarding: everything
        (`blackhole`) or only what comes from the client (`blackhole-oneway`: the
        replies still reach it). The fault starts with the last command."""
        commands = ["add table inet pathwatch_bed"]
        if fault == "blackhole":
            return [
                *commands,
                "add chain inet pathwatch_bed forward"
                " { type filter hook forward priority 0; policy drop; }",
            ]
        return [
            *commands,
            "add chain inet pathwatch_bed forward { type filter hook forward priority 0; }",
            f'add rule inet pathwatch_bed forward iifname "{self.router1_if_client}" drop',
        ]

    def drop_on_path1(self, address: str) -> None:
        """Drop only what router-1 forwards to or from `address` (path 1 stays up for the
        rest); `clear_faults` removes it."""
        script = (
            "table inet pathwatch_bed {\n"
            "  chain forward_address {\n"
            "    type filter hook forward priority 0; policy accept;\n"
            f"    ip daddr {address} drop\n"
            f"    ip saddr {address} drop\n"
            "  }\n"
            "}\n"
        )
        run("ip", "netns", "exec", self.router1, "nft", "-f", "-", stdin=script)

    def clear_faults(self) -> None:
        """Undo every fault (ignoring the ones not applied)."""
        self.ns(self.router1, "ip", "link", "set", self.router1_if_client, "up", check=False)
        self.ns(self.router1, "nft", "delete", "table", "inet", "pathwatch_bed", check=False)
        self.ns(self.router1, "iptables", "-F", "FORWARD", check=False)

    def break_path2(self) -> None:
        """Blackhole router-2 too (both paths down)."""
        script = (
            "table inet pathwatch_bed {\n"
            "  chain forward { type filter hook forward priority 0; policy drop; }\n"
            "}\n"
        )
        run("ip", "netns", "exec", self.router2, "nft", "-f", "-", stdin=script)

    def restore_path2(self) -> None:
        """Undo `break_path2`."""
        self.ns(self.router2, "nft", "delete", "table", "inet", "pathwatch_bed", check=False)


@contextlib.contextmanager
def bed(tag: str | None = None) -> Iterator[Bed]:
    """A freshly built bed, always torn down afterwards (even on failure)."""
    made = Bed.named(tag)
    try:
        yield made.create()
    finally:
        made.destroy()
