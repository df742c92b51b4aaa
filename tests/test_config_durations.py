"""Durations: one parser (schemas.durations) for config keys, CLI options, NSM_* variables."""

from __future__ import annotations

import re
import subprocess
import sys
from decimal import Decimal
from typing import Any

import msgspec
import pytest
import typer
import yaml
from hypothesis import given
from hypothesis import strategies as st

from agents.healer.settings import SettingsError
from agents.healer.settings import parse_duration as healer_duration
from pathwatch.cliduration import duration_option
from pathwatch.runtime.configfile import ConfigError, parse_config
from schemas.catalog import KeyDoc, config_keys
from schemas.durations import DurationError, parse_duration

#: A config that has every section a duration key can sit in.
BASE = """
reachability-profiles:
  p: {tcp: {high: {}}, udp: {high: {}}, tls: {high: {}}, http: {high: {}}, dns: {high: {}}}
icmp-probe-profiles: {p: {probe-address: [127.0.0.1]}}
tcp-probe-profiles: {p: {probe-address: [127.0.0.1], port: 1}}
tls-probe-profiles: {p: {probe-address: [127.0.0.1]}}
udp-probe-profiles: {p: {probe-address: [127.0.0.1], port: 1}}
http-probe-profiles: {p: {url: 'http://127.0.0.1:1/'}}
dns-probe-profiles: {p: {probe-address: [127.0.0.1], query-name: a.test}}
services:
  s:
    service-routes:
      r:
        next-hop: {node: n}
        reachability-detection:
          reachability-profile: p
          probes: [{name: a, icmp-probe-profile: p}]
notifiers: {n: {kind: alertmanager, url: 'http://127.0.0.1:9093'}}
"""
PATHWATCH = [sys.executable, "-m", "pathwatch"]
DURATION_KEYS = [key for key in config_keys() if key.duration]
_NS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_NS |= {"d": 86400 * 10**9, "w": 7 * 86400 * 10**9}


def _sample(key: KeyDoc) -> float:
    """A value in the key's range: its default when that is a positive number, else 1."""
    default = msgspec.json.decode(key.default or "null")
    return float(default) if isinstance(default, int | float) and default > 0 else 1.0


def _text(number: float) -> str:
    return f"{number:.6f}".rstrip("0").rstrip(".")


def _forms(value: float, unit: str) -> list[object]:
    """The value as a number, with its own unit, with the other unit, and as a combination."""
    if unit == "ms":
        return [value, f"{_text(value)}ms", f"{_text(value / 1000)}s"]
    forms: list[object] = [value, f"{_text(value)}s", f"{_text(value * 1000)}ms"]
    if value >= 60:
        forms.append(f"{int(value // 60)}m{_text(value % 60)}s")
    return forms


def _set(raw: dict[str, Any], path: str, value: object) -> None:
    node: Any = raw
    parts = path.replace("[]", ".0").split(".")
    names = {"<name>": None, "<class>": "high"}
    for part in parts[:-1]:
        if part in names:
            part = names[part] or next(iter(node))
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    node[parts[-1]] = value


def _get(config: object, path: str) -> object:
    node: Any = config
    for part in path.replace("[]", ".0").split("."):
        if part in ("<name>", "<class>"):
            node = next(iter(node.values()))
        elif part.isdigit():
            node = node[int(part)]
        else:
            node = getattr(node, part.replace("-", "_"))
    return node


def test_the_duration_keys_come_from_the_model() -> None:
    paths = {key.path for key in DURATION_KEYS}
    assert len(paths) >= 30
    assert "services.<name>.service-routes.<name>.reachability-detection.hold-down" in paths
    assert {key.unit for key in DURATION_KEYS} == {"s", "ms"}


@pytest.mark.parametrize("key", DURATION_KEYS, ids=[key.path for key in DURATION_KEYS])
def test_every_duration_key_takes_every_form(key: KeyDoc) -> None:
    value = _sample(key)
    for form in _forms(value, key.unit or ""):
        raw = yaml.safe_load(BASE)
        _set(raw, key.path, form)
        config = parse_config(yaml.safe_dump(raw), "d.yaml").config
        assert _get(config, key.path) == pytest.approx(value), form
    raw = yaml.safe_load(BASE)
    _set(raw, key.path, "5 parsecs")
    with pytest.raises(ConfigError, match="unknown unit 'parsecs'"):
        parse_config(yaml.safe_dump(raw), "d.yaml")


@pytest.mark.parametrize(
    ("text", "unit", "seconds"),
    [
        ("30", "s", 30.0),
        ("30s", "s", 30.0),
        ("200ms", "s", 0.2),
        ("5m", "s", 300.0),
        ("1h", "s", 3600.0),
        ("1m30s", "s", 90.0),
        (" 1h 30m ", "s", 5400.0),
        ("1.5s", "s", 1.5),
        ("2d", "s", 172800.0),
        ("250", "ms", 250.0),
        ("0.25s", "ms", 250.0),
        ("1500us", "ms", 1.5),
    ],
)
def test_parser_forms(text: str, unit: str, seconds: float) -> None:
    assert parse_duration(text, unit) == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty duration"),
        ("   ", "empty duration"),
        ("-5s", "cannot be negative"),
        ("5x", "unknown unit 'x'"),
        ("1s--2s", "unknown unit 's--'"),
        ("1m30", "expected a duration such as 30s"),
        ("fast", "expected a duration such as 30s"),
        ("nan", "expected a duration such as 30s"),
    ],
)
def test_bad_durations_say_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(DurationError, match=message):
        parse_duration(text)


_UNITS = st.sampled_from(sorted(_NS))


@given(st.lists(st.tuples(st.integers(0, 10**6), _UNITS), min_size=1, max_size=4))
def test_a_sum_of_parts_is_exact(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{number}{unit}" for number, unit in parts)
    nanoseconds = sum(number * _NS[unit] for number, unit in parts)
    assert parse_duration(text) == float(Decimal(nanoseconds) / 10**9)


@given(st.text(max_size=12))
def test_any_text_is_a_duration_or_a_duration_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except DurationError:
        return
    assert seconds >= 0


@pytest.mark.parametrize("text", ["90", "1m30s", "200ms", "5m", "1.5s"])
def test_cli_and_healer_use_the_same_parser(text: str) -> None:
    assert duration_option(text) == healer_duration(text, "NSM_X") == parse_duration(text)


def test_cli_and_healer_report_the_same_errors() -> None:
    with pytest.raises(DurationError) as shared:
        parse_duration("5x")
    with pytest.raises(typer.BadParameter, match=re.escape(str(shared.value))):
        duration_option("5x")
    with pytest.raises(SettingsError, match=re.escape(str(shared.value))):
        healer_duration("5x", "NSM_LIVENESS_CHECK_INTERVAL")


def test_history_since_takes_units_and_refuses_bad_ones() -> None:
    result = subprocess.run(
        [*PATHWATCH, "history", "--service", "s", "--route", "r", "--since", "5q"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "unknown unit 'q'" in result.stdout + result.stderr
