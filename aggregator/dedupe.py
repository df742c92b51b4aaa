"""Duplicate batches: the same (agent, seq) seen twice is dropped.

A batch is a duplicate when its agent already sent that seq with the same
`sent` time; an agent that restarts and counts from 0 again sends different
`sent` times, so it is not mistaken for a replay. The memory per agent is
bounded (the most recent `per_agent` sequence numbers). The oldest entry is
evicted with `OrderedDict.popitem(last=False)`, O(1): deleting the first key
of a plain dict leaves dead slots that every later `next(iter(...))` scans.
"""

from __future__ import annotations

from collections import OrderedDict


class Deduplicator:
    """Remembers the recent (seq -> sent) of every agent."""

    def __init__(self, per_agent: int = 4096) -> None:
        self.per_agent = per_agent
        self._seen: dict[str, OrderedDict[int, float]] = {}

    def is_duplicate(self, agent: str, seq: int, sent: float) -> bool:
        """True for a replay; otherwise remember (agent, seq) and return False."""
        seen = self._seen.get(agent)
        if seen is None:
            seen = self._seen[agent] = OrderedDict()
        elif seen.get(seq) == sent:
            return True
        seen[seq] = sent
        if len(seen) > self.per_agent:
            seen.popitem(last=False)
        return False

    def agents(self) -> int:
        return len(self._seen)
