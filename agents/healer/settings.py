"""Healer settings: the config's `healer` section, overridden by the NSM_* environment.

`NSM_LIVENESS_CHECK_ENABLED` (true/false, yes/no, 1/0, on/off),
`NSM_LIVENESS_CHECK_INTERVAL` and `NSM_LIVENESS_CHECK_TIMEOUT` (Go-style
durations such as `200ms`, `1s`, `1.5s`, `1m`, or plain seconds, read by the
project's one duration parser, `schemas.durations`) win over
`healer.liveness-check-*`. Defaults: enabled, every 200 ms, 1 s deadline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from schemas import durations
from schemas.config import HealerConfig

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """An NSM_* variable holds something that is not a boolean / positive duration."""


def parse_duration(text: str, name: str) -> float:
    """`200ms` -> 0.2, `1s` -> 1.0, `2` -> 2.0 (`schemas.durations`); positive values only."""
    try:
        seconds = durations.parse_duration(text)
    except durations.DurationError as exc:
        raise SettingsError(f"{name}={text!r}: {exc}") from None
    if seconds <= 0:
        raise SettingsError(f"{name}={text!r}: must be greater than zero")
    return seconds


def parse_bool(text: str, name: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SettingsError(f"{name}={text!r}: expected true or false")


@dataclass(frozen=True)
class LivenessSettings:
    """Whether the datapath check runs, how often (s) and with what deadline (s)."""

    enabled: bool = True
    interval: float = 0.2
    timeout: float = 1.0

    @classmethod
    def resolve(cls, config: HealerConfig, environ: Mapping[str, str]) -> LivenessSettings:
        """The config's values with any NSM_LIVENESS_CHECK_* variable on top."""
        enabled = config.liveness_check_enabled
        interval = config.liveness_check_interval
        timeout = config.liveness_check_timeout
        if (raw := environ.get("NSM_LIVENESS_CHECK_ENABLED")) is not None:
            enabled = parse_bool(raw, "NSM_LIVENESS_CHECK_ENABLED")
        if (raw := environ.get("NSM_LIVENESS_CHECK_INTERVAL")) is not None:
            interval = parse_duration(raw, "NSM_LIVENESS_CHECK_INTERVAL")
        if (raw := environ.get("NSM_LIVENESS_CHECK_TIMEOUT")) is not None:
            timeout = parse_duration(raw, "NSM_LIVENESS_CHECK_TIMEOUT")
        return cls(enabled=enabled, interval=interval, timeout=timeout)
