"""The words of a reason: figures for humans, fast-evidence reasons, and a machine's
reason made of every failing test with its numbers, each said once.

A machine that is down shows why: the failing tests of its last judged window
("tcp/high error 100 % > 25 %") followed by the fast evidence received in the
episode ("tcp/high 3 consecutive failures (refused)"). `Explanation` keeps
those two parts for one machine and says when the text they make changes (so
the state and the alarm are updated).
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass

from schemas.wire import FastEvidence

#: What agents and aggregators put at the start of a consecutive-failures detail.
_RUN_DETAIL = re.compile(r"^\d+ consecutive failures \(([^)]*)\)")


def number(value: float) -> str:
    """A figure for humans: integers without decimals, others with one."""
    rounded = round(value, 1)
    if rounded == int(rounded):
        return str(int(rounded))
    return f"{rounded:.1f}"


def join_once(parts: Iterable[str]) -> str:
    """The non-empty `parts` joined with "; ", each said once, in first-seen order."""
    return "; ".join(dict.fromkeys(part for part in parts if part))


def consecutive_failures_reason(evidence: FastEvidence) -> str:
    """`tcp/high 3 consecutive failures (refused) to 127.0.0.2`: the run, its last outcome
    (taken from the detail when it starts with the run, as agents and aggregators write
    it; else the whole detail) and the destination, without repeating the run."""
    label = f"{evidence.protocol or 'any'}/{evidence.traffic_class or 'any'}"
    text = f"{label} {evidence.count} consecutive failures"
    detail = evidence.detail
    found = _RUN_DETAIL.match(detail)
    outcome = found.group(1) if found else detail
    if outcome:
        text += f" ({outcome})"
    if evidence.destination:
        text += f" to {evidence.destination}"
    return text


@dataclass(slots=True)
class Explanation:
    """Why one machine is down, in two parts: the failing tests of its last judged
    window and the fast evidence of the episode. Cleared whenever the machine moves."""

    window: tuple[str, ...] = ()
    fast: str = ""

    def clear(self) -> None:
        self.window = ()
        self.fast = ""

    def text(self) -> str:
        return join_once((*self.window, self.fast))
