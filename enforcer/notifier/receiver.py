"""What the consumer needs of a receiver kind (`alertmanager`, `webhook`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from enforcer.notifier.attempt import Attempt
from schemas.wire import Alarm


class Receiver(Protocol):
    """One receiver: delivers one alarm per attempt, in the order it is given them."""

    kind: str
    #: whether `restore` wants the alarms this notifier handled before it started
    wants_history: bool

    async def deliver(self, alarm: Alarm) -> Attempt:
        """One attempt to hand `alarm` over."""
        ...

    def abandon(self, alarm: Alarm) -> None:
        """`alarm` was dead-lettered (never delivered)."""
        ...

    def restore(self, handled: Iterable[Alarm]) -> None:
        """The alarms handled before this process started, oldest first."""
        ...
