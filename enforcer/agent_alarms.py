"""Agent-lost alarms: which heartbeats are taken, and the alarms silence raises.

`AgentAlarms` wraps the liveness table (`enforcer.liveness`) with what bounds it
and what it publishes: a heartbeat is taken only from an agent on a configured
node or naming a configured route, at most every HEARTBEAT_MIN_INTERVAL_S per
name, while the table has room (MAX_AGENTS, MAX_AGENTS_PER_NODE per node);
otherwise it is counted in `dropped`. An agent silent past its limit raises one
agent-lost alarm (at most one per name every AGENT_ALARM_MIN_INTERVAL_S), and
its next heartbeat clears it.
"""

from collections import Counter
from collections.abc import Callable, Container

import msgspec

from enforcer import ids
from enforcer.liveness import AgentLiveness
from enforcer.messages import Publication
from schemas import subjects
from schemas.limits import (
    AGENT_ALARM_MIN_INTERVAL_S,
    HEARTBEAT_MIN_INTERVAL_S,
    MAX_AGENTS,
    MAX_AGENTS_PER_NODE,
)
from schemas.wire import AgentHeartbeat, Alarm


class AgentAlarms:
    """The liveness of every agent taken, and its raised agent-lost alarms."""

    def __init__(
        self,
        silence_windows: int,
        window_of: Callable[[frozenset[str], str], float],
        dropped: Counter[str],
    ) -> None:
        self.silence_windows = silence_windows
        self.liveness = AgentLiveness(silence_windows, window_of)
        self.dropped = dropped
        #: raised agent-lost alarms by agent name
        self.raised: dict[str, Alarm] = {}
        #: when the last agent-lost alarm of each agent name was raised (rate limit)
        self.alarmed_at: dict[str, float] = {}
        #: agents taken into the liveness table, by the node of their first heartbeat
        self.per_node: Counter[str] = Counter()

    def admit(
        self, heartbeat: AgentHeartbeat, nodes: Container[str], routes: Container[str]
    ) -> bool:
        """Whether to take `heartbeat` (`nodes`, `routes`: the configured ones)."""
        seen = self.liveness.agents.get(heartbeat.agent)
        if seen is None:
            if heartbeat.node not in nodes and not any(key in routes for key in heartbeat.routes):
                self.dropped["heartbeat:unknown-agent"] += 1
                return False
            if len(self.liveness.agents) >= MAX_AGENTS:
                self.dropped["heartbeat:agents-full"] += 1
                return False
            if self.per_node[heartbeat.node] >= MAX_AGENTS_PER_NODE:
                self.dropped["heartbeat:node-full"] += 1
                return False
            self.per_node[heartbeat.node] += 1
        elif abs(heartbeat.ts - seen.last_seen) < HEARTBEAT_MIN_INTERVAL_S and not seen.lost:
            self.dropped["heartbeat:rate"] += 1
            return False
        return True

    def heard(
        self, heartbeat: AgentHeartbeat, covered: frozenset[str]
    ) -> tuple[bool, list[Publication]]:
        """Take an admitted heartbeat: (whether the agent's routes may change staleness,
        the clear of its agent-lost alarm if one was raised)."""
        back = self.liveness.beat(heartbeat, covered, heartbeat.ts)
        raised = self.raised.pop(heartbeat.agent, None)
        if raised is None:
            return back, []
        cleared = msgspec.structs.replace(
            raised,
            status="cleared",
            cleared_at=heartbeat.ts,
            reason=f"agent {heartbeat.agent} heard again",
        )
        subject = subjects.system_alarm(heartbeat.agent)
        return True, [Publication(subject, ids.msg_id(raised.id, "cleared"), cleared)]

    def lost(self, now: float) -> list[Publication]:
        """The agent-lost alarms of agents whose silence just passed their limit."""
        publications: list[Publication] = []
        for seen in self.liveness.newly_lost(now):
            if seen.agent in self.raised or not self._may_alarm(seen.agent, now):
                continue
            alarm = Alarm(
                id=ids.agent_alarm_id(seen.agent, seen.last_seen),
                status="raised",
                severity="major",
                service=subjects.SYSTEM_SERVICE,
                route=seen.agent,
                cause="agent-lost",
                agent=seen.agent,
                reason=(
                    f"agent {seen.agent} on {seen.node} silent for"
                    f" {seen.silence_limit:g} s ({self.silence_windows} windows)"
                ),
                raised_at=seen.last_seen + seen.silence_limit,
            )
            self.raised[seen.agent] = alarm
            subject = subjects.system_alarm(seen.agent)
            publications.append(Publication(subject, ids.msg_id(alarm.id, "raised"), alarm))
        return publications

    def restore(self, alarm: Alarm) -> None:
        """An agent-lost alarm raised before a restart, so its clear has the right id."""
        if alarm.agent:
            self.raised[alarm.agent] = alarm

    def _may_alarm(self, agent: str, now: float) -> bool:
        """At most one agent-lost alarm per name every AGENT_ALARM_MIN_INTERVAL_S."""
        last = self.alarmed_at.get(agent)
        if last is not None and now - last < AGENT_ALARM_MIN_INTERVAL_S:
            self.dropped["agent-lost:rate"] += 1
            return False
        if len(self.alarmed_at) >= MAX_AGENTS:
            self.alarmed_at.clear()
        self.alarmed_at[agent] = now
        return True
