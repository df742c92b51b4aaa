"""Agent liveness from heartbeats: silence is not failure, it is staleness.

An agent silent for `silence_windows` detection windows is *lost*: the routes
only it covered become stale (state kept) and an agent-lost alarm is raised;
its next heartbeat makes it live again.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from schemas.wire import AgentHeartbeat


@dataclass
class AgentSeen:
    """The last heartbeat of one agent and whether it is considered lost."""

    agent: str
    node: str
    last_seen: float
    silence_limit: float
    routes: frozenset[str] = field(default_factory=frozenset)
    lost: bool = False


class AgentLiveness:
    """Which agents are live, which are lost, and which routes each one covers."""

    def __init__(
        self,
        silence_windows: int,
        window_of: Callable[[frozenset[str], str], float],
    ) -> None:
        self.silence_windows = silence_windows
        self._window_of = window_of
        self.agents: dict[str, AgentSeen] = {}
        self._stale: set[str] | None = None

    def beat(self, heartbeat: AgentHeartbeat, covered: frozenset[str], now: float) -> bool:
        """Record a heartbeat; True when the agent was lost and is back."""
        window = self._window_of(covered, heartbeat.node)
        limit = self.silence_windows * max(window, heartbeat.interval_s)
        seen = self.agents.get(heartbeat.agent)
        self._stale = None
        if seen is None:
            self.agents[heartbeat.agent] = AgentSeen(
                heartbeat.agent, heartbeat.node, now, limit, covered
            )
            return False
        was_lost = seen.lost
        seen.last_seen = now
        seen.silence_limit = limit
        seen.routes = covered
        seen.node = heartbeat.node
        seen.lost = False
        return was_lost

    def newly_lost(self, now: float) -> list[AgentSeen]:
        """Agents whose silence just passed their limit."""
        lost: list[AgentSeen] = []
        for seen in self.agents.values():
            if not seen.lost and now - seen.last_seen > seen.silence_limit:
                seen.lost = True
                lost.append(seen)
        if lost:
            self._stale = None
        return lost

    def stale_routes(self) -> set[str]:
        """Routes covered by at least one agent and only by lost agents (do not mutate)."""
        if self._stale is not None:
            return self._stale
        covered_live: set[str] = set()
        covered_lost: set[str] = set()
        for seen in self.agents.values():
            (covered_lost if seen.lost else covered_live).update(seen.routes)
        self._stale = covered_lost - covered_live
        return self._stale
