"""Active / standby through a lease in the JetStream KV bucket `pathwatch-leases`.

The lease is one key holding (holder, expires); it is taken with `create`
when absent and renewed or stolen after expiry with revision-checked
`update`, so two instances can never both believe they hold it for longer
than the clock skew between them.
"""

import logging
from collections.abc import Callable

import msgspec
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

log = logging.getLogger("pathwatch.enforcer.lease")

LEASE_KEY = "enforcer"


class LeaseRecord(msgspec.Struct, frozen=True):
    holder: str
    expires: float


class Lease:
    """One instance's view of the lease: `await refresh()` takes or renews it when it can."""

    def __init__(self, kv: KeyValue, instance: str, ttl: float, clock: Callable[[], float]) -> None:
        self.kv = kv
        self.instance = instance
        self.ttl = ttl
        self.clock = clock
        self.held = False
        self.holder: str | None = None
        self.revision: int | None = None

    async def refresh(self) -> bool:
        """Take or renew the lease; returns whether this instance holds it now."""
        now = self.clock()
        record = msgspec.json.encode(LeaseRecord(self.instance, now + self.ttl))
        try:
            try:
                entry = await self.kv.get(LEASE_KEY)
            except (KeyNotFoundError, KeyDeletedError):
                self.revision = await self.kv.create(LEASE_KEY, record)
                self.holder = self.instance
                self.held = True
                return True
            current = msgspec.json.decode(entry.value or b"", type=LeaseRecord)
            self.holder = current.holder
            if current.holder == self.instance or current.expires < now:
                self.revision = await self.kv.update(LEASE_KEY, record, last=entry.revision)
                self.holder = self.instance
                self.held = True
                return True
        except (KeyWrongLastSequenceError, msgspec.DecodeError) as exc:
            log.debug("lease race lost: %s", exc)
        except Exception as exc:
            log.warning("lease refresh failed: %s", exc)
        self.held = False
        return False

    async def release(self) -> None:
        """Give the lease up at once so a standby need not wait for the TTL."""
        if not self.held or self.revision is None:
            return
        expired = msgspec.json.encode(LeaseRecord(self.instance, 0.0))
        try:
            await self.kv.update(LEASE_KEY, expired, last=self.revision)
        except Exception as exc:
            log.debug("lease release failed: %s", exc)
        self.held = False
