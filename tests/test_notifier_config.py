"""The `notifiers:` config section: durations with units, and every error at once."""

from __future__ import annotations

import pytest

from pathwatch.runtime.configfile import ConfigError, parse_config

GOOD = """
services:
  web: {service-routes: {r1: {next-hop: {node: n1}}}}
notifiers:
  ops:
    kind: alertmanager
    url: http://127.0.0.1:9093
    resend-interval: 30s
    services: [web, _system]
  chat:
    kind: webhook
    url: http://127.0.0.1:8099/hook
    secret-file: /etc/pathwatch/chat.secret
    timeout: 2s
    retry: {initial: 500ms, max: 1m, give-up-after: 2h}
"""


def test_a_good_section_loads_with_durations_in_units() -> None:
    config = parse_config(GOOD, "good.yaml").config
    ops, chat = config.notifiers["ops"], config.notifiers["chat"]
    assert (ops.kind, ops.resend_interval, ops.services) == (
        "alertmanager",
        30.0,
        ["web", "_system"],
    )
    assert (chat.timeout, chat.retry.initial, chat.retry.max) == (2.0, 0.5, 60.0)
    assert chat.retry.give_up_after == 7200.0


def test_every_notifier_error_is_reported_at_once() -> None:
    text = """
services:
  web: {service-routes: {r1: {next-hop: {node: n1}}}}
notifiers:
  bad.name: {kind: webhook, url: http://127.0.0.1:1/, secret: s}
  pager: {kind: email, url: http://127.0.0.1:1/}
  hook: {kind: webhook, url: ftp://127.0.0.1/x, services: [nope], resend-interval: 10s}
  am: {kind: alertmanager, url: http://127.0.0.1:9093, secret: s, retry: {initial: 5s, max: 1s}}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "bad.yaml")
    messages = "\n".join(str(problem) for problem in caught.value.problems)
    for expected in (
        "notifier name 'bad.name'",
        "expected one of alertmanager, webhook",
        "expected an http(s) URL, got 'ftp://127.0.0.1/x'",
        "unknown service 'nope'",
        "a webhook needs exactly one of secret, secret-file",
        "resend-interval is only for kind alertmanager",
        "secret is only for kind webhook",
        "retry.max must be >= retry.initial",
    ):
        assert expected in messages, expected


def test_a_resend_interval_past_resolve_timeout_is_a_warning() -> None:
    text = GOOD.replace("resend-interval: 30s", "resend-interval: 5m")
    warnings = [str(w) for w in parse_config(text, "slow.yaml").warnings]
    assert any("resolve_timeout" in warning for warning in warnings)
