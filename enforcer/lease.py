"""Active / standby through a lease in the JetStream KV bucket `pathwatch-leases`.

The lease is one key (`subjects.LEASE_ENFORCER`) holding a `schemas.wire.EnforcerLease`
JSON record (holder, acquired, renewed, expires); it is taken with `create` when
absent and renewed or stolen after expiry with revision-checked `update`, so two
instances can never both believe they hold it for longer than the clock skew
between them. Other components read the record from the schema type alone.
"""

import logging
from collections.abc import Callable

from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from schemas import subjects
from schemas.codec import DecodeError, decode_message, encode
from schemas.wire import EnforcerLease

log = logging.getLogger("pathwatch.enforcer.lease")

LEASE_KEY = subjects.LEASE_ENFORCER


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
        self.acquired: float = 0.0

    def _record(self, now: float, acquired: float) -> bytes:
        return encode(
            EnforcerLease(
                holder=self.instance, acquired=acquired, renewed=now, expires=now + self.ttl
            )
        )

    async def refresh(self) -> bool:
        """Take or renew the lease; returns whether this instance holds it now."""
        now = self.clock()
        try:
            try:
                entry = await self.kv.get(LEASE_KEY)
            except (KeyNotFoundError, KeyDeletedError):
                self.revision = await self.kv.create(LEASE_KEY, self._record(now, now))
                self._took(now)
                return True
            current = _readable(entry.value, now, self.ttl)
            self.holder = current.holder
            if current.holder == self.instance or current.expires < now:
                renewing = current.holder == self.instance and current.expires >= now
                acquired = (current.acquired or now) if renewing else now
                record = self._record(now, acquired)
                self.revision = await self.kv.update(LEASE_KEY, record, last=entry.revision)
                self._took(acquired)
                return True
        except KeyWrongLastSequenceError as exc:
            log.debug("lease race lost: %s", exc)
        except Exception as exc:
            log.warning("lease refresh failed: %s", exc)
        self.held = False
        return False

    def _took(self, acquired: float) -> None:
        self.holder = self.instance
        self.acquired = acquired
        self.held = True

    async def release(self) -> None:
        """Give the lease up at once so a standby need not wait for the TTL."""
        if not self.held or self.revision is None:
            return
        now = self.clock()
        expired = encode(
            EnforcerLease(holder=self.instance, acquired=self.acquired, renewed=now, expires=0.0)
        )
        try:
            await self.kv.update(LEASE_KEY, expired, last=self.revision)
        except Exception as exc:
            log.debug("lease release failed: %s", exc)
        self.held = False


def _readable(value: bytes | None, now: float, ttl: float) -> EnforcerLease:
    """The lease in `value`; one that cannot be read, or that claims more than ten TTLs
    ahead, is taken as expired (a poisoned record must not keep every enforcer standby)."""
    try:
        lease = decode_message(value or b"", EnforcerLease)
    except DecodeError as exc:
        log.warning("lease record unreadable (%s); taking it as expired", exc.reason)
        return EnforcerLease(holder="", expires=0.0)
    if lease.expires > now + 10 * ttl:
        log.warning(
            "lease of %r claims %.0f s ahead; taking it as expired",
            lease.holder[:64],
            lease.expires - now,
        )
        return EnforcerLease(holder="", expires=0.0)
    return lease
