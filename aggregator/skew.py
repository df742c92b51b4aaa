"""Clock skew between each agent and the aggregator.

Every batch gives one sample `sent - received` (agent clock minus aggregator
clock, minus the transit delay). The estimate is the largest sample of the
last `samples` batches: transit delay only ever lowers a sample, so the
largest one is the closest to the true offset. Positive: the agent is ahead.

`SkewMonitor.observe` says when an agent crosses the alarm threshold (once)
and when it is back under it (once). At most `limits.MAX_AGENTS` agents are
kept; the agent heard least recently is forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Literal

from schemas.limits import MAX_AGENTS

SkewChange = Literal["raise", "clear"]


@dataclass
class AgentSkew:
    samples: deque[float]
    estimate: float = 0.0
    alarmed: bool = False


class SkewMonitor:
    """Per-agent skew estimates and alarm edges."""

    def __init__(
        self, alarm_threshold_s: float = 1.0, samples: int = 16, max_agents: int = MAX_AGENTS
    ) -> None:
        self.alarm_threshold_s = alarm_threshold_s
        self.samples = samples
        self.max_agents = max_agents
        #: agents, least recently heard first
        self.agents: OrderedDict[str, AgentSkew] = OrderedDict()

    def observe(self, agent: str, sent: float, received: float) -> SkewChange | None:
        """Record one batch; return "raise" / "clear" on an alarm edge, else None."""
        state = self.agents.get(agent)
        if state is None:
            state = self.agents[agent] = AgentSkew(deque(maxlen=self.samples))
            if len(self.agents) > self.max_agents:
                self.agents.popitem(last=False)
        else:
            self.agents.move_to_end(agent)
        state.samples.append(sent - received)
        state.estimate = max(state.samples)
        over = abs(state.estimate) > self.alarm_threshold_s
        if over and not state.alarmed:
            state.alarmed = True
            return "raise"
        if state.alarmed and not over:
            state.alarmed = False
            return "clear"
        return None

    def estimate(self, agent: str) -> float | None:
        state = self.agents.get(agent)
        return None if state is None else state.estimate
