"""Clock skew between each agent and the aggregator, judged on fresh batches only.

Every batch gives one sample `sent - received` (agent clock minus aggregator
clock, minus the time the batch spent on its way). Delay only ever lowers a
sample, so the estimate is the largest sample received in the last
`span_s` seconds: one fresh batch in that span is enough to see the true offset.
Positive: the agent is ahead.

Batches that waited out a NATS outage (in an agent's outbox, or in a server that
was stopped) arrive with old `sent` times, all at once, and would make any clock
look behind. Two rules keep them from being judged alone: the estimate spans
`span_s` seconds of arrivals, so an outage shorter than that leaves the fresh
samples from before it in the estimate; and an alarm is raised only when the
estimate has been over the threshold for `span_s`, so after a longer outage the
fresh batches that follow the burst (within a probe interval) end it first. It
clears as soon as the estimate is back under.

`SkewMonitor.observe` says when an agent crosses the alarm threshold (once)
and when it is back under it (once). At most `limits.MAX_AGENTS` agents are
kept; the agent heard least recently is forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Literal

from schemas.limits import MAX_AGENTS

SkewChange = Literal["raise", "clear"]

#: Samples kept per agent: the most recent, whatever the span.
MAX_SAMPLES = 16


@dataclass
class AgentSkew:
    #: (received, sample), oldest first
    samples: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))
    estimate: float = 0.0
    #: since when (arrival time) the estimate has been over the threshold
    over_since: float | None = None
    alarmed: bool = False


class SkewMonitor:
    """Per-agent skew estimates and alarm edges."""

    def __init__(
        self, alarm_threshold_s: float = 1.0, span_s: float = 30.0, max_agents: int = MAX_AGENTS
    ) -> None:
        self.alarm_threshold_s = alarm_threshold_s
        self.span_s = span_s
        self.max_agents = max_agents
        #: agents, least recently heard first
        self.agents: OrderedDict[str, AgentSkew] = OrderedDict()

    def observe(self, agent: str, sent: float, received: float) -> SkewChange | None:
        """Record one batch; return "raise" / "clear" on an alarm edge, else None."""
        state = self.agents.get(agent)
        if state is None:
            state = self.agents[agent] = AgentSkew()
            if len(self.agents) > self.max_agents:
                self.agents.popitem(last=False)
        else:
            self.agents.move_to_end(agent)
        samples = state.samples
        samples.append((received, sent - received))
        while samples[0][0] < received - self.span_s:
            samples.popleft()
        state.estimate = max(sample for _, sample in samples)
        if abs(state.estimate) <= self.alarm_threshold_s:
            state.over_since = None
            if state.alarmed:
                state.alarmed = False
                return "clear"
            return None
        if state.over_since is None:
            state.over_since = received
        if not state.alarmed and received - state.over_since >= self.span_s:
            state.alarmed = True
            return "raise"
        return None

    def estimate(self, agent: str) -> float | None:
        state = self.agents.get(agent)
        return None if state is None else state.estimate
