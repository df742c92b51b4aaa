"""Partitions of the measurement subjects (deploy/nats/partitions.conf).

With the server-side mapping, nats-server rewrites `pw.meas.<service>.<route>`
to `pw.meas.<K>.<service>.<route>` where K = partition(N, service, route):
FNV-1a 32-bit of the two tokens concatenated, modulo N. The aggregator of
partition K subscribes to `pw.meas.K.*.*`, in no queue group: every replica of a
partition receives all of its measurements and makes every window, and the
enforcer judges one window per (route, window start) (`enforcer.window_choice`).

Without the mapping (the embedded server of `pathwatch up`) it also
subscribes `pw.meas.*.*` and keeps only the routes whose hash falls in its
partition (`owns`), computed exactly as the server does, so the same route
lands on the same aggregator either way.
"""

from __future__ import annotations

from schemas import subjects

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv1a_32(data: bytes) -> int:
    """FNV-1a 32-bit hash (the hash of nats-server's `partition` mapping function)."""
    value = _FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return value


def partition_of(service: str, route: str, partitions: int) -> int:
    """The partition nats-server assigns to `pw.meas.<service>.<route>`."""
    return fnv1a_32((service + route).encode()) % partitions


def subscriptions(partition: int, partitions: int) -> list[str]:
    """The subjects the aggregator of `partition` subscribes to."""
    if partitions <= 1:
        return [subjects.MEAS_ALL]
    return [f"{subjects.MEAS_PREFIX}.{partition}.*.*", subjects.MEAS_ALL]


def mapping(partitions: int) -> str:
    """The `mappings` block of a nats-server config for `partitions` partitions."""
    return (
        "mappings = {\n"
        f'  "pw.meas.*.*": "pw.meas.{{{{partition({partitions},1,2)}}}}.{{{{wildcard(1)}}}}'
        '.{{wildcard(2)}}"\n'
        "}\n"
    )


class PartitionFilter:
    """Decides from the subject alone whether a message belongs to this partition."""

    __slots__ = ("partition", "partitions")

    def __init__(self, partition: int, partitions: int) -> None:
        if not 0 <= partition < max(1, partitions):
            raise ValueError(f"partition {partition} outside 0..{partitions - 1}")
        self.partition = partition
        self.partitions = partitions

    def route_of(self, subject: str) -> tuple[str, str] | None:
        """(service, route) from a plain or partitioned subject, or None when not ours."""
        tokens = subject.split(".")
        if len(tokens) == 4:
            service, route = tokens[2], tokens[3]
            if self.partitions > 1 and partition_of(service, route, self.partitions) != (
                self.partition
            ):
                return None
            return service, route
        if len(tokens) == 5:
            return tokens[3], tokens[4]
        return None
