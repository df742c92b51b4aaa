"""One delivery attempt over HTTP, and what its answer means.

`delivered`: a 2xx answer. `retry`: the receiver may take it later: no answer
(connection refused or reset, timeout) or 408, 425, 429 or a 5xx. `reject`:
any other answer (1xx, 3xx, other 4xx): sending the same request again would
get the same answer, so the message is dead-lettered instead of retried.
`reason` is a short label for the failure counters (`timeout`, `connection`,
`http-503`, ...), `detail` the longer text for logs and dead letters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import httpx

Verdict = Literal["delivered", "retry", "reject"]
#: Answers that say "not now" rather than "never".
RETRYABLE_STATUS = frozenset({408, 425, 429})
#: Characters of a receiver's answer kept in `detail`.
DETAIL_CHARS = 300


@dataclass(frozen=True)
class Attempt:
    """The result of one attempt."""

    verdict: Verdict
    reason: str = ""
    detail: str = ""

    @property
    def delivered(self) -> bool:
        return self.verdict == "delivered"


DELIVERED = Attempt("delivered")


def judge_status(status: int, body: str) -> Attempt:
    """The verdict on an HTTP answer with status `status` and body `body`."""
    if 200 <= status < 300:
        return DELIVERED
    detail = f"HTTP {status}: {body[:DETAIL_CHARS]}".strip()
    if status >= 500 or status in RETRYABLE_STATUS:
        return Attempt("retry", f"http-{status}", detail)
    return Attempt("reject", f"http-{status}", detail)


async def post(
    client: httpx.AsyncClient, url: str, content: bytes, headers: dict[str, str]
) -> Attempt:
    """POST `content` to `url` once; never raises for a network or HTTP failure."""
    try:
        response = await client.post(url, content=content, headers=headers)
    except httpx.TimeoutException as exc:
        return Attempt("retry", "timeout", f"no answer in time: {exc!r}")
    except httpx.TransportError as exc:
        return Attempt("retry", "connection", f"cannot reach {url}: {exc!r}")
    return judge_status(response.status_code, response.text)
