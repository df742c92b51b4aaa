"""The fleet as its members report it: every role instance and agent with its node or
host, pathwatch version and the config it runs, and which ones are behind.

`FleetBook` keeps the latest `RoleStatus` of each role instance and the latest
`AgentHeartbeat` of each agent (at most `limits.MAX_STATUS_SOURCES`, the one heard
least recently forgotten first), stamped with the time they arrived. `report` lists
them against a reference config: the latest revision in KV `pathwatch-config` when
there is one, else the config most members run. A member is `behind` when it runs
another config than the reference, and `silent` when it has not been heard for
`SILENT_INTERVALS` of its intervals (it may have stopped; what it runs is unknown).
A member that does not say which config it runs (a role that does not follow a
config source) is neither.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

import msgspec

from pathwatch.runtime.status import LatestBook
from schemas.limits import MAX_STATUS_SOURCES, STATUS_INTERVAL_S
from schemas.wire import AgentHeartbeat, ConfigMark, RoleStatus

#: A member not heard for this many of its intervals is shown as silent.
SILENT_INTERVALS = 3

ReferenceKind = Literal["kv", "majority", "none"]


class FleetMember(msgspec.Struct, frozen=True, kw_only=True):
    """One role instance (or agent) as last heard."""

    role: str
    instance: str
    #: the agent's node, or the host a role runs on
    node: str
    version: str
    #: the config it runs: digest, and KV revision (0: from a file)
    digest: str
    revision: int
    #: config revisions it refused since it started
    refused: int
    last_seen: float
    interval_s: float
    behind: bool = False
    silent: bool = False


class FleetReport(msgspec.Struct, frozen=True, kw_only=True):
    """Every member against the reference config (`reference_from` says which)."""

    reference: ConfigMark | None
    reference_from: ReferenceKind
    members: list[FleetMember]


def _refused(counters: dict[str, int]) -> int:
    return sum(count for key, count in counters.items() if key.startswith("config:"))


class FleetBook:
    """The latest report of each member, bounded."""

    def __init__(self, max_members: int = MAX_STATUS_SOURCES) -> None:
        self.members: LatestBook[tuple[str, str], FleetMember] = LatestBook(max_members)

    def _seen(self, member: FleetMember) -> None:
        self.members.seen((member.role, member.instance), member)

    def status(self, status: RoleStatus, now: float) -> None:
        mark = status.config or ConfigMark()
        self._seen(
            FleetMember(
                role=status.role,
                instance=status.instance,
                node=status.host,
                version=status.version,
                digest=mark.digest,
                revision=mark.revision,
                refused=_refused(status.dropped),
                last_seen=now,
                interval_s=STATUS_INTERVAL_S,
            )
        )

    def heartbeat(self, heartbeat: AgentHeartbeat, now: float) -> None:
        self._seen(
            FleetMember(
                role="agent",
                instance=heartbeat.agent,
                node=heartbeat.node,
                version=heartbeat.version,
                digest=heartbeat.config_hash,
                revision=heartbeat.config_revision,
                refused=_refused(heartbeat.counters),
                last_seen=now,
                interval_s=heartbeat.interval_s,
            )
        )

    def report(self, latest: ConfigMark | None, now: float) -> FleetReport:
        """Every member, by role and instance, against `latest` (the newest revision in
        KV) or, without one, against the config most members that are heard run."""
        members = [
            msgspec.structs.replace(m, silent=now - m.last_seen > SILENT_INTERVALS * m.interval_s)
            for m in self.members.values()
        ]
        reference, kind = _reference(latest, members)
        if reference is not None:
            members = [
                msgspec.structs.replace(
                    m, behind=bool(m.digest) and not m.silent and m.digest != reference.digest
                )
                for m in members
            ]
        members.sort(key=lambda m: (m.role, m.instance))
        return FleetReport(reference=reference, reference_from=kind, members=members)


def _reference(
    latest: ConfigMark | None, members: list[FleetMember]
) -> tuple[ConfigMark | None, ReferenceKind]:
    if latest is not None:
        return latest, "kv"
    digests = Counter(m.digest for m in members if not m.silent and m.digest)
    ranked = digests.most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None, "none"
    return ConfigMark(digest=ranked[0][0]), "majority"
