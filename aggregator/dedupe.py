"""Duplicate batches: the same (agent, seq) seen twice is dropped.

A batch is a duplicate when its agent already sent that seq with the same
`sent` time; an agent that restarts and counts from 0 again sends different
`sent` times, so it is not mistaken for a replay. The memory per agent is
bounded (the most recent `per_agent` sequence numbers).
"""

from __future__ import annotations


class Deduplicator:
    """Remembers the recent (seq -> sent) of every agent."""

    def __init__(self, per_agent: int = 4096) -> None:
        self.per_agent = per_agent
        self._seen: dict[str, dict[int, float]] = {}

    def is_duplicate(self, agent: str, seq: int, sent: float) -> bool:
        """True for a replay; otherwise remember (agent, seq) and return False."""
        seen = self._seen.get(agent)
        if seen is None:
            seen = self._seen[agent] = {}
        elif seen.get(seq) == sent:
            return True
        seen[seq] = sent
        if len(seen) > self.per_agent:
            del seen[next(iter(seen))]
        return False

    def agents(self) -> int:
        return len(self._seen)
