"""Network-namespace test beds: namespaces, veth pairs and nftables rules that
tests create and always delete again, even when the test fails.

Addresses used here live only inside the namespaces the tests create, which
have no route out of them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from pathwatch.testbed import veth_link

requires_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 to create network namespaces",
)
requires_nft = pytest.mark.skipif(
    shutil.which("nft") is None, reason="needs nftables (apt-get install nftables)"
)
requires_iptables = pytest.mark.skipif(
    shutil.which("iptables") is None, reason="needs iptables (apt-get install iptables)"
)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, raising with its stderr when it fails."""
    result = subprocess.run(args, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result


def in_ns(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *args, check=check)


def unique(prefix: str) -> str:
    """A short unique name (interface names are limited to 15 characters)."""
    return f"{prefix}{uuid.uuid4().hex[:6]}"


@contextlib.contextmanager
def namespaces(*prefixes: str) -> Iterator[list[str]]:
    """Create one namespace per prefix (loopback up); delete them all afterwards."""
    names: list[str] = []
    try:
        for prefix in prefixes:
            name = unique(f"pw{prefix}")
            sh("ip", "netns", "add", name)
            names.append(name)
            in_ns(name, "ip", "link", "set", "lo", "up")
        yield names
    finally:
        for name in names:
            sh("ip", "netns", "del", name, check=False)


def veth(ns_a: str, addr_a: str, ns_b: str, addr_b: str) -> tuple[str, str]:
    """Join two namespaces with a veth pair; addresses in CIDR form. Returns (if_a, if_b)."""
    if_a, if_b = unique("va"), unique("vb")
    veth_link(ns_a, if_a, addr_a, ns_b, if_b, addr_b)
    return if_a, if_b


def nft(ns: str, script: str) -> None:
    """Load an nftables script inside a namespace."""
    result = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"nft failed: {result.stderr.strip()}\n{script}")
