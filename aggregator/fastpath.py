"""The consecutive-failures fast path: N failures in a row on a lane, reported at once.

A lane here is one probe towards one destination (the fine lane), so one
dead probe address is seen even when other addresses of the same profile
answer. Evidence is emitted once per run of failures; a success ends the run.
Probes their agent confirms itself (`schemas.fastdetect`) are left out: the
agent publishes their evidence sooner, and only it sees the re-probes that
answered in between.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.wire import Lane


@dataclass(frozen=True)
class FailureRun:
    """A lane that just reached the threshold."""

    key: Lane
    count: int
    last_outcome: str


class FailureRuns:
    """Run lengths of failures per fine lane of one route."""

    __slots__ = ("agent_confirmed", "runs", "threshold")

    def __init__(self, threshold: int, agent_confirmed: frozenset[str] = frozenset()) -> None:
        self.threshold = threshold
        #: names of probes whose agent confirms their failures itself
        self.agent_confirmed = agent_confirmed
        self.runs: dict[Lane, int] = {}

    def failure(self, key: Lane, outcome: str) -> FailureRun | None:
        """Count a failure on `key`, which may be the lane's plain tuple (`RouteWindows.add`):
        read by index, not by name."""
        confirmed = self.agent_confirmed
        if confirmed and key[4] in confirmed and key[2] == "probe":
            return None
        count = self.runs.get(key, 0) + 1
        self.runs[key] = count
        if count == self.threshold:
            return FailureRun(Lane(*key), count, outcome)
        return None

    def success(self, key: Lane) -> None:
        self.runs.pop(key, None)
