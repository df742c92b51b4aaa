"""Probe kinds by name: the built-in ones and plugins from the entry-point group
`pathwatch.probes`.

A plugin is a distribution declaring, in its `entry_points.txt`::

    [pathwatch.probes]
    my-kind = my_package.my_module:probe_function

where `probe_function` has the one probe signature (see `agents.probe.base`).
A route uses it with `probes: [{name: x, plugin: my-kind, options: {...}}]`;
it gets a `PluginProfile` with those options. An unknown plugin name is a
`UnknownProbeKind` error when the agent starts.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import cast

from agents.probe.base import ExchangeFunc, ProbeFunc
from agents.probe.http import probe_http
from agents.probe.icmp import exchange_icmp, probe_icmp
from agents.probe.tcp import exchange_tcp, probe_tcp
from agents.probe.tls import probe_tls
from agents.probe.udp import exchange_udp, probe_udp

ENTRY_POINT_GROUP = "pathwatch.probes"

BUILTIN: dict[str, ProbeFunc] = {
    "icmp": probe_icmp,
    "tcp": probe_tcp,
    "tls": probe_tls,
    "udp": probe_udp,
    "http": probe_http,
}

#: Single request / reply exchanges, for confirm mode (schemas.fastdetect.CONFIRM_KINDS).
EXCHANGES: dict[str, ExchangeFunc] = {
    "icmp": exchange_icmp,
    "tcp": exchange_tcp,
    "udp": exchange_udp,
}


class UnknownProbeKind(LookupError):
    """A probe kind or plugin that nothing provides."""


def plugin_names() -> list[str]:
    """Names of every installed plugin probe kind."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def load_plugin(name: str) -> ProbeFunc:
    """The probe function of plugin `name`, loaded through its entry point."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            loaded = ep.load()
            if not callable(loaded):
                raise UnknownProbeKind(f"plugin {name!r} ({ep.value}) is not callable")
            return cast(ProbeFunc, loaded)
    raise UnknownProbeKind(
        f"unknown probe plugin {name!r}: no entry point named {name!r} in group"
        f" {ENTRY_POINT_GROUP!r} (installed: {plugin_names() or 'none'})"
    )


def resolve(kind: str) -> ProbeFunc:
    """A built-in probe kind, or else a plugin of that name."""
    found = BUILTIN.get(kind)
    if found is not None:
        return found
    return load_plugin(kind)
