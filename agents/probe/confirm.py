"""Confirm mode of one target: after a missed reply, quick re-probes decide at once.

A pure state machine with the clock passed in (`now`, seconds on any
monotonic clock), driven by the target's watcher (`agents.probe.watch`):

* `missed(now, sent_at)`: an attempt (scheduled or re-probe) got no good reply
  within its timeout, or a failure answer. The first one starts a *run*: the
  target is in confirm mode and a re-probe is due at once, then one every
  `interval` s, at most `threshold - 1` in a run (enough, with the first miss,
  to reach the threshold). Returns a `Confirmed` when this miss is the
  `threshold`-th in a row: the evidence to publish, once per run.
* `replied(now)`: any good reply (a late one to an earlier attempt too) ends
  the run: the path answers, back to the normal schedule. Ask `refutes(sent_at)`
  first: a reply to an attempt sent before a reported run was confirmed shows the
  evidence came from a late reply, not a lost one.
* `reprobe_due(now)` / `reprobe_sent(now)`: when the watcher sends re-probes.

Nothing here sends a packet: the steady schedule of the target never changes,
re-probes only happen inside a run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Confirmed:
    """A run that reached the threshold: what the evidence says."""

    misses: int
    reprobes: int
    #: when the first missed attempt of the run was sent (caller's clock)
    first_sent: float
    #: when its miss was noticed, and when the threshold was reached
    noticed: float
    confirmed: float


class ConfirmSchedule:
    """Suspicion run of one target; see the module docstring."""

    __slots__ = (
        "confirmed_at",
        "first_sent",
        "interval",
        "misses",
        "next_reprobe",
        "noticed",
        "reported",
        "reprobes",
        "threshold",
    )

    def __init__(self, threshold: int, interval: float) -> None:
        if threshold < 1:
            raise ValueError("confirm mode needs a threshold of at least 1")
        if interval <= 0:
            raise ValueError("confirm mode needs a positive re-probe interval")
        self.threshold = threshold
        self.interval = interval
        self.misses = 0
        self.reprobes = 0
        self.reported = False
        self.first_sent = 0.0
        self.noticed = 0.0
        self.next_reprobe = 0.0
        self.confirmed_at = 0.0

    @property
    def confirming(self) -> bool:
        """In a run that has not yet reached the threshold."""
        return self.misses > 0 and not self.reported

    def missed(self, now: float, sent_at: float) -> Confirmed | None:
        """One more miss in a row; the evidence when it reaches the threshold."""
        if self.reported:
            return None  # already reported; the run lasts until a reply
        if self.misses == 0:
            self.first_sent = sent_at
            self.noticed = now
            self.next_reprobe = now
        self.misses += 1
        if self.misses < self.threshold:
            return None
        self.reported = True
        self.confirmed_at = now
        return Confirmed(self.misses, self.reprobes, self.first_sent, self.noticed, now)

    def refutes(self, sent_at: float) -> bool:
        """Whether a good reply to an attempt sent at `sent_at` shows that the reported
        run was wrong: the attempt was sent before the run was confirmed, so a miss it
        counted was a late reply, not a lost one."""
        return self.reported and sent_at <= self.confirmed_at

    def replied(self, now: float) -> bool:
        """A good reply: the run (if any) ends. True when a run was open."""
        was_open = self.misses > 0
        self.misses = 0
        self.reprobes = 0
        self.reported = False
        return was_open

    def reprobe_due(self, now: float) -> bool:
        return self.confirming and self.reprobes < self.threshold - 1 and now >= self.next_reprobe

    def reprobe_sent(self, now: float) -> None:
        self.reprobes += 1
        self.next_reprobe = now + self.interval

    def next_wakeup(self) -> float | None:
        """When the next re-probe is due (None: none will be in this run)."""
        if not self.confirming or self.reprobes >= self.threshold - 1:
            return None
        return self.next_reprobe
