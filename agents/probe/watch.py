"""Suspicion re-probing of one target: the reply timeout, confirm mode and its evidence.

A `TargetWatch` runs the scheduled attempts of one target (one probe address
and traffic class of a probe, pinned to its route) through the probe kind's
exchange (`agents.probe.base.ExchangeFunc`). Every attempt still waits up to
probe-duration and is measured as before, but once the target's reply
timeout (`RttEstimator`, SRTT + 4 RTTVAR within the configured floor and
ceiling) has passed without a good reply, the miss is noticed and the target
enters confirm mode (`ConfirmSchedule`): re-probes on the same pinned route,
class and protocol every confirm-interval, each waiting one reply timeout,
until a good reply (to any attempt of the run, a late one too) ends the run,
or `consecutive-failures` misses in a row confirm it and `on_confirmed` is
called once with a `Confirmed` (the watcher's evidence). Failure answers
(refused, unreachable...) are misses at once.

Re-probes are not measurements: they never reach the windows, so confirm mode
changes neither the steady probe rate nor the windows' statistics.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agents.probe.base import ExchangeFunc, Target, attempt_timeout, spaced_attempts
from agents.probe.confirm import Confirmed, ConfirmSchedule
from agents.probe.rtt import RttEstimator, TimeoutBounds
from schemas.wire import Measurement

#: The outcome that opened a confirmed run is reported with the evidence.
OnConfirmed = Callable[["TargetWatch", Confirmed, str], Awaitable[None]]


@dataclass(frozen=True)
class ConfirmSettings:
    """How one probe's targets are confirmed (from the profile and the route)."""

    threshold: int
    interval: float
    bounds: TimeoutBounds
    #: waited on top of the reply timeout (TCP: hold-open after establishment)
    extra: float = 0.0


class TargetWatch:
    """Scheduled attempts, reply timeout and confirm mode of one target."""

    def __init__(
        self,
        target: Target,
        exchange: ExchangeFunc,
        profile: Any,
        settings: ConfirmSettings,
        on_confirmed: OnConfirmed,
        *,
        counters: Counter[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.exchange = exchange
        self.profile = profile
        self.settings = settings
        self.on_confirmed = on_confirmed
        self.counters: Counter[str] = Counter() if counters is None else counters
        self.clock = clock
        self.rtt = RttEstimator(settings.bounds)
        self.schedule = ConfirmSchedule(settings.threshold, settings.interval)
        self._reprober: asyncio.Task[None] | None = None
        self._reprobes: set[asyncio.Task[None]] = set()
        self._reports: set[asyncio.Task[None]] = set()

    def reply_timeout(self) -> float:
        return self.rtt.timeout() + self.settings.extra

    # --- the steady schedule ---------------------------------------------------------

    async def probe(self, deadline: float) -> list[Measurement]:
        """One scheduled run: number-of-attempts watched exchanges over probe-duration."""
        profile = self.profile
        duration = float(profile.probe_duration)
        return await spaced_attempts(
            int(profile.number_of_attempts),
            duration,
            lambda: self.attempt(attempt_timeout(duration, deadline)),
        )

    async def attempt(self, timeout: float) -> Measurement:
        """One scheduled exchange waiting up to `timeout` s; a miss is noticed after the
        reply timeout."""
        return await self._watched(timeout)

    async def _watched(self, timeout: float) -> Measurement:
        sent = self.clock()
        task = asyncio.ensure_future(self.exchange(self.target, self.profile, timeout))
        noticed = False
        try:
            done, _ = await asyncio.wait({task}, timeout=min(self.reply_timeout(), timeout))
            if not done:
                # a reply read in the same loop turn as the timer (the loop was late)
                # completes the exchange first: look again before calling it missed
                await asyncio.sleep(0)
                if not task.done():
                    noticed = True
                    self.counters["confirm_suspected"] += 1
                    self._miss(sent, "timeout")
            measurement = await task
        finally:
            if not task.done():
                task.cancel()
        self._outcome(measurement, sent, counted=noticed)
        return measurement

    # --- confirm mode ---------------------------------------------------------------

    def _outcome(self, measurement: Measurement, sent: float, *, counted: bool) -> None:
        if measurement.outcome == "ok":
            if measurement.latency_ms is not None:
                self.rtt.sample(measurement.latency_ms / 1000)
            if self.schedule.refutes(sent):
                self.counters["confirm_refuted"] += 1  # evidence from a late reply
            if self.schedule.replied(self.clock()):
                self.counters["confirm_cleared"] += 1
                self._stop_reprobes()
        elif not counted:
            self._miss(sent, measurement.outcome)

    def _miss(self, sent: float, outcome: str) -> None:
        if self.schedule.misses == 0:
            self.counters["confirm_runs"] += 1
        confirmed = self.schedule.missed(self.clock(), sent)
        if confirmed is not None:
            self.counters["confirm_evidence"] += 1
            self._stop_reprobes()
            task = asyncio.ensure_future(self.on_confirmed(self, confirmed, outcome))
            self._reports.add(task)
            task.add_done_callback(self._reports.discard)
        elif self.schedule.confirming and (self._reprober is None or self._reprober.done()):
            self._reprober = asyncio.ensure_future(self._reprobe_loop())

    async def _reprobe_loop(self) -> None:
        """Send the run's re-probes when due."""
        while True:
            wake = self.schedule.next_wakeup()
            if wake is None:
                return
            now = self.clock()
            if wake > now:
                await asyncio.sleep(wake - now)
                continue
            self.schedule.reprobe_sent(now)
            task = asyncio.ensure_future(self._reprobe())
            self._reprobes.add(task)
            task.add_done_callback(self._reprobes.discard)

    async def _reprobe(self) -> None:
        """One re-probe: missed after the reply timeout, but a late reply still counts."""
        self.counters["confirm_reprobes"] += 1
        await self._watched(self.settings.bounds.ceiling)

    def stop_reprobes(self) -> None:
        """Cancel the re-probes in flight (the agent stops or reloads)."""
        self._stop_reprobes()
        for task in list(self._reprobes):
            task.cancel()

    def _stop_reprobes(self) -> None:
        current = asyncio.current_task()
        for task in list(self._reprobes):
            if task is not current:
                task.cancel()
        if self._reprober is not None and self._reprober is not current:
            self._reprober.cancel()
        self._reprober = None

    async def close(self) -> None:
        """Cancel re-probes; let evidence being published finish (bounded)."""
        self.stop_reprobes()
        if self._reports:
            with contextlib.suppress(Exception):
                await asyncio.wait(set(self._reports), timeout=1.0)
