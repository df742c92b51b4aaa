"""Bounded outbox of an agent: messages held while NATS is unreachable.

When full, the oldest message is dropped first and counted, so a long outage
costs old measurements, never unbounded memory; after the reconnect the kept
messages go out in the order they were produced.
"""

from __future__ import annotations

from collections import deque


class Outbox:
    """FIFO of (subject, payload) with a fixed capacity."""

    def __init__(self, capacity: int = 1000) -> None:
        if capacity < 1:
            raise ValueError("outbox capacity must be at least 1")
        self.capacity = capacity
        self._items: deque[tuple[str, bytes]] = deque()
        self.dropped = 0
        self.queued = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, subject: str, payload: bytes) -> None:
        """Queue a message, dropping (and counting) the oldest when full."""
        if len(self._items) >= self.capacity:
            self._items.popleft()
            self.dropped += 1
        self._items.append((subject, payload))
        self.queued += 1

    def peek(self) -> tuple[str, bytes] | None:
        return self._items[0] if self._items else None

    def pop(self) -> tuple[str, bytes]:
        return self._items.popleft()
