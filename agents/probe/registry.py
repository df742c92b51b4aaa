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

from importlib import import_module
from importlib.metadata import entry_points
from typing import cast

from agents.probe.base import ExchangeFunc, PreflightFunc, ProbeFunc
from schemas.probekinds import KINDS

ENTRY_POINT_GROUP = "pathwatch.probes"


def _builtin(kind: str, role: str) -> ProbeFunc:
    """`<role>_<kind>` of the kind's own module, `agents.probe.<kind>`."""
    return cast(ProbeFunc, getattr(import_module(f"agents.probe.{kind}"), f"{role}_{kind}"))


#: The built-in kinds of `schemas.probekinds`, each one module with its `probe_<kind>`.
BUILTIN: dict[str, ProbeFunc] = {kind.name: _builtin(kind.name, "probe") for kind in KINDS}

#: Single request / reply exchanges (`exchange_<kind>`) of the confirmable kinds, for
#: confirm mode (schemas.fastdetect).
EXCHANGES: dict[str, ExchangeFunc] = {
    kind.name: cast(ExchangeFunc, _builtin(kind.name, "exchange"))
    for kind in KINDS
    if kind.confirmable
}

#: Checks at start and reload (`preflight_<kind>`) of the kinds that have one.
PREFLIGHTS: dict[str, PreflightFunc] = {
    kind.name: check
    for kind in KINDS
    if (
        check := getattr(import_module(f"agents.probe.{kind.name}"), f"preflight_{kind.name}", None)
    )
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
