"""Which probes their agent confirms itself (suspicion re-probing, DESIGN.md "Fast detection").

One rule, read by the agent (which re-probes and publishes the evidence) and
by the aggregator (which then leaves those probe lanes out of its own
consecutive-failures fast path, so a re-probe that answered is never
overruled by failures counted on the scheduled measurements alone).

A probe is confirmed by its agent when its kind has a single request / reply
exchange (`confirmable` in `schemas.probekinds`), its route has a fast path
(`consecutive-failures` > 0) and its profile's `confirm-interval` is above 0.
"""

from __future__ import annotations

from typing import Any

from schemas.config import PathwatchConfig, ServiceRoute
from schemas.probekinds import CONFIRM_KINDS


def confirm_interval(profile: Any) -> float:
    """The profile's re-probe interval in seconds (0: confirm mode off)."""
    return float(profile.confirm_interval)


def reply_timeout_bounds(profile: Any) -> tuple[float, float]:
    """(floor, ceiling) of the reply timeout in seconds: the ceiling defaults to, and
    never exceeds, probe-duration; the floor never exceeds the ceiling."""
    duration = float(profile.probe_duration)
    bounds = profile.reply_timeout
    ceiling = duration if bounds.max is None else min(float(bounds.max), duration)
    return min(float(bounds.min), ceiling), ceiling


def agent_confirms(kind: str, profile: Any, route: ServiceRoute) -> bool:
    """Whether the agent confirms a probe of this kind and profile on this route."""
    return (
        kind in CONFIRM_KINDS
        and route.reachability_detection.consecutive_failures > 0
        and confirm_interval(profile) > 0
    )


def agent_confirmed_probes(config: PathwatchConfig, route: ServiceRoute) -> frozenset[str]:
    """Names of the route's probes that their agent confirms."""
    names: set[str] = set()
    for ref in route.reachability_detection.probes:
        found = ref.profile_ref()
        profile = config.probe_profile(ref)
        if found is not None and profile is not None and agent_confirms(found[0], profile, route):
            names.add(ref.name)
    return frozenset(names)
