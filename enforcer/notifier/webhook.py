"""The `webhook` receiver: a JSON POST of each alarm, signed with HMAC-SHA256.

The body is the alarm exactly as on the wire (the `Alarm` JSON of
`PATHWATCH_ALARMS`). Headers (docs/notifier.md, "Verifying a webhook"):

* `X-Pathwatch-Signature: sha256=<hex>`: HMAC-SHA256 with the shared secret
  over `<timestamp>.<body>` (the timestamp header's value, a dot, the raw body);
* `X-Pathwatch-Timestamp`: Unix seconds when this attempt was signed (a
  receiver refuses old ones to stop replays);
* `X-Pathwatch-Delivery: <alarm id>:<raised|cleared>`: the same on every
  retry of one transition (the receiver's de-duplication key);
* `X-Pathwatch-Notifier`: the notifier's name.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

import httpx

from enforcer.notifier.attempt import Attempt, post
from schemas.codec import encode
from schemas.config import NotifierConfig
from schemas.wire import Alarm

SIGNATURE_HEADER = "X-Pathwatch-Signature"
TIMESTAMP_HEADER = "X-Pathwatch-Timestamp"
DELIVERY_HEADER = "X-Pathwatch-Delivery"
NOTIFIER_HEADER = "X-Pathwatch-Notifier"


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The value of `X-Pathwatch-Signature` for `body` signed at `timestamp`."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def delivery_id(alarm: Alarm) -> str:
    """One transition of one alarm (or one update of a raised one): its de-duplication key."""
    if alarm.updated_at is not None:
        return f"{alarm.id}:updated@{round(alarm.updated_at * 1000)}"
    return f"{alarm.id}:{alarm.status}"


class WebhookReceiver:
    """POSTs each alarm to one URL."""

    kind = "webhook"
    wants_history = False

    def __init__(
        self, name: str, config: NotifierConfig, secret: bytes, client: httpx.AsyncClient
    ) -> None:
        self.name = name
        self.url = config.url
        self._secret = secret
        self._client = client

    def request(self, alarm: Alarm, now: float) -> tuple[bytes, dict[str, str]]:
        """The body and headers of one attempt to deliver `alarm`."""
        body = encode(alarm)
        timestamp = str(int(now))
        return body, {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(self._secret, timestamp, body),
            TIMESTAMP_HEADER: timestamp,
            DELIVERY_HEADER: delivery_id(alarm),
            NOTIFIER_HEADER: self.name,
        }

    async def deliver(self, alarm: Alarm) -> Attempt:
        body, headers = self.request(alarm, time.time())
        return await post(self._client, self.url, body, headers)

    def abandon(self, alarm: Alarm) -> None:
        """Nothing to forget: a webhook keeps no state."""

    def restore(self, handled: Iterable[Alarm]) -> None:
        """Nothing to restore: a webhook keeps no state."""
