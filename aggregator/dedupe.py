"""Duplicate batches: the same (agent, seq) seen twice is dropped.

A batch is a duplicate when its agent already sent that seq with the same
`sent` time; an agent that restarts and counts from 0 again sends different
`sent` times, so it is not mistaken for a replay. The memory per agent is
bounded (the most recent `per_agent` sequence numbers). The oldest entry is
evicted with `OrderedDict.popitem(last=False)`, O(1): deleting the first key
of a plain dict leaves dead slots that every later `next(iter(...))` scans.
The whole table is bounded too (`limits.MAX_AGENTS` agents and
`limits.MAX_DEDUPE_ENTRIES` pairs): the agent heard least recently goes first.
"""

from __future__ import annotations

from collections import OrderedDict

from schemas.limits import MAX_AGENTS, MAX_DEDUPE_ENTRIES


class Deduplicator:
    """Remembers the recent (seq -> sent) of every agent."""

    def __init__(
        self,
        per_agent: int = 4096,
        max_agents: int = MAX_AGENTS,
        max_entries: int = MAX_DEDUPE_ENTRIES,
    ) -> None:
        self.per_agent = per_agent
        self.max_agents = max_agents
        self.max_entries = max_entries
        #: agents, least recently heard first
        self._seen: OrderedDict[str, OrderedDict[int, float]] = OrderedDict()
        self._entries = 0
        self.evicted = 0

    def is_duplicate(self, agent: str, seq: int, sent: float) -> bool:
        """True for a replay; otherwise remember (agent, seq) and return False."""
        seen = self._seen.get(agent)
        if seen is None:
            seen = self._seen[agent] = OrderedDict()
            known = None
        else:
            known = seen.get(seq)
            if known == sent:
                return True
            self._seen.move_to_end(agent)
        seen[seq] = sent
        if known is None:  # a new entry
            if len(seen) > self.per_agent:
                seen.popitem(last=False)
            else:
                self._entries += 1
                if self._entries > self.max_entries or len(self._seen) > self.max_agents:
                    self._evict()
        return False

    def _evict(self) -> None:
        while len(self._seen) > 1 and (
            self._entries > self.max_entries or len(self._seen) > self.max_agents
        ):
            _, oldest = self._seen.popitem(last=False)
            self._entries -= len(oldest)
            self.evicted += 1

    def agents(self) -> int:
        return len(self._seen)
