"""Deliver one alarm, retrying with exponential backoff until it is taken, refused or
too old (tenacity).

Waits grow from `retry.initial` doubling up to `retry.max`, each with up to
`retry.initial` seconds of random jitter (so notifiers that failed together do
not retry in step); after `retry.give-up-after` seconds of failures the last
failed attempt is returned and the caller dead-letters the alarm as expired.
A `reject` verdict ends the retries at once. Stopping is the caller's: it
cancels the delivery.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_delay,
    wait_exponential_jitter,
)

from enforcer.notifier.attempt import Attempt
from schemas.config import NotifierRetry


@dataclass(frozen=True)
class Delivery:
    """How a delivery ended: its last attempt, how many there were, when the first was."""

    last: Attempt
    attempts: int
    first_attempt: float

    @property
    def delivered(self) -> bool:
        return self.last.delivered

    @property
    def dead_letter_reason(self) -> str:
        """`rejected` or `expired` (for a delivery that did not succeed)."""
        return "rejected" if self.last.verdict == "reject" else "expired"


async def deliver_with_retries(
    send: Callable[[], Awaitable[Attempt]],
    policy: NotifierRetry,
    on_failure: Callable[[Attempt], None],
    on_retry: Callable[[], None],
) -> Delivery:
    """Call `send` until it delivers or rejects, or `policy.give_up_after` has passed;
    `on_failure` sees every failed attempt, `on_retry` is called before each retry."""
    first = time.time()
    attempts = 0

    async def attempt() -> Attempt:
        nonlocal attempts
        attempts += 1
        result = await send()
        if not result.delivered:
            on_failure(result)
        return result

    def before_sleep(_state: RetryCallState) -> None:
        on_retry()

    def last_attempt(state: RetryCallState) -> Attempt:
        assert state.outcome is not None
        result: Attempt = state.outcome.result()
        return result

    retrying = AsyncRetrying(
        retry=retry_if_result(lambda result: result.verdict == "retry"),
        wait=wait_exponential_jitter(
            multiplier=policy.initial, max=policy.max, jitter=policy.initial
        ),
        stop=stop_after_delay(policy.give_up_after),
        before_sleep=before_sleep,
        retry_error_callback=last_attempt,
    )
    last: Attempt = await retrying(attempt)
    return Delivery(last, attempts, first)
