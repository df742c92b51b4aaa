"""The `notifiers:` config section: where alarms are pushed (docs/notifier.md).

A mapping of notifier name to one receiver, told apart by `kind`:
`alertmanager` (Alertmanager's v2 alerts API) or `webhook` (a signed JSON POST).
Each notifier reads the alarm stream through its own durable consumer, so the
names must be subject-safe and should not change (a new name starts afresh).
"""

from typing import Annotated

from msgspec import Meta, Struct, field

#: A duration in seconds: at least 1 ms, at most a week.
_Duration = Annotated[float, Meta(gt=0, le=7 * 86400)]


class _Cfg(Struct, frozen=True, kw_only=True, rename="kebab", forbid_unknown_fields=True):
    """Base of config sections: kebab-case keys, unknown keys refused."""


class RetryConfig(_Cfg, frozen=True, kw_only=True):
    """How a failed delivery is retried: exponential backoff from `initial` doubling up
    to `max` (with up to `initial` seconds of jitter), for at most `give-up-after`."""

    initial: _Duration = 1.0
    max: _Duration = 30.0
    give_up_after: _Duration = 86400.0


class _Receiver(_Cfg, frozen=True, kw_only=True, tag_field="kind"):
    """What every notifier has: the receiver's URL, a request timeout, retries and an
    optional filter by service (`_system` for alarms about pathwatch itself)."""

    url: Annotated[str, Meta(min_length=1)]
    timeout: _Duration = 5.0
    services: list[str] = []
    retry: RetryConfig = field(default_factory=RetryConfig)


class AlertmanagerNotifier(_Receiver, frozen=True, kw_only=True, tag="alertmanager"):
    """Alertmanager's v2 API at `url` (e.g. http://127.0.0.1:9093). Active alarms are
    sent again every `resend-interval`, well under Alertmanager's `resolve_timeout`
    (5 minutes by default), as Prometheus does."""

    resend_interval: _Duration = 60.0


class WebhookNotifier(_Receiver, frozen=True, kw_only=True, tag="webhook"):
    """A JSON POST of each alarm to `url`, signed with HMAC-SHA256 over the shared
    secret: `secret` itself, or `secret-file` holding it (one of the two)."""

    secret: str | None = None
    secret_file: str | None = None


NotifierConfig = AlertmanagerNotifier | WebhookNotifier
