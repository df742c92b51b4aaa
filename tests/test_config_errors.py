"""Config errors: every one in one run, with file:line:column and key path; duplicates refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pathwatch.runtime.configfile import ConfigError, load_config, parse_config

SIX_MISTAKES_YAML = """\
nats:
  url: nats://127.0.0.1:4222
  replicas: 9
icmp-probe-profiles:
  lo-ping:
    probe-interval: 2
    numbr-of-attempts: 4
    probe-address: [127.0.0.1]
services:
  web:
    address: 127.0.0.1/32
    service-routes:
      r1:
        next-hop: {node: edge-1, interface: lo}
        reachability-detection:
          detection-window: 10s
          detection-window: 20s
          max-hold-down: 1hr
          probes: [{name: ping, icmp-probe-profile: lo-pingg}]
"""

SIX_MISTAKES_TOML = """\
[nats]
url = "nats://127.0.0.1:4222"
replicas = 9
[icmp-probe-profiles.lo-ping]
probe-interval = 2
numbr-of-attempts = 4
probe-address = ["127.0.0.1"]
traffic-classes = ["urgent"]
[services.web]
address = "127.0.0.1/32"
[services.web.service-routes.r1]
next-hop = {node = "edge-1", interface = "lo"}
[services.web.service-routes.r1.reachability-detection]
max-hold-down = "1hr"
[[services.web.service-routes.r1.reachability-detection.probes]]
name = "ping"
icmp-probe-profile = "lo-pingg"
"""

ROUTE = "services.web.service-routes.r1.reachability-detection"


def place(text: str, line_text: str, token: str, occurrence: int = 1) -> str:
    """`line:column` of `token` on the `occurrence`-th line containing `line_text`."""
    found = [n for n, line in enumerate(text.splitlines(), 1) if line_text in line]
    number = found[occurrence - 1]
    return f"{number}:{text.splitlines()[number - 1].index(token) + 1}"


def test_six_mistakes_are_reported_in_one_run_with_line_and_column(tmp_path: Path) -> None:
    draft = tmp_path / "draft.yaml"
    draft.write_text(SIX_MISTAKES_YAML)
    text = SIX_MISTAKES_YAML
    result = subprocess.run(
        [sys.executable, "-m", "pathwatch", "config", "check", str(draft)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    errors = [line.strip() for line in result.stderr.splitlines() if ": error: " in line]
    expected = [
        (place(text, "replicas", "9"), "$.nats.replicas", "<= 5, got 9"),
        (
            place(text, "numbr", "numbr"),
            "$.icmp-probe-profiles.lo-ping.numbr-of-attempts",
            "did you mean 'number-of-attempts'",
        ),
        (place(text, "address: 127", "127"), "$.services.web.address", "expected a list"),
        (
            place(text, "detection-window", "detection-window", 2),
            f"$.{ROUTE}.detection-window",
            f"duplicate key 'detection-window' (first at line {place(text, 'window', 'd')[:2]}",
        ),
        (place(text, "max-hold-down", "1hr"), f"$.{ROUTE}.max-hold-down", "unknown unit 'hr'"),
        (
            place(text, "lo-pingg", "lo-pingg"),
            f"$.{ROUTE}.probes[0].icmp-probe-profile",
            "unknown icmp-probe-profile 'lo-pingg'",
        ),
    ]
    assert len(errors) == 6, result.stderr
    for line, (where, path, what) in zip(errors, expected, strict=True):
        assert line.startswith(f"{draft}:{where}: error: {path}: "), (line, where)
        assert what in line, line
    assert "6 errors" in result.stderr


def test_six_mistakes_in_toml_with_line_and_column() -> None:
    text = SIX_MISTAKES_TOML
    with pytest.raises(ConfigError) as info:
        parse_config(text, "draft.toml")
    found = [(f"{p.line}:{p.column}", p.path) for p in info.value.problems]
    assert found == [
        (place(text, "replicas", "9"), "$.nats.replicas"),
        (place(text, "numbr", "numbr"), "$.icmp-probe-profiles.lo-ping.numbr-of-attempts"),
        (place(text, "urgent", '"urgent'), "$.icmp-probe-profiles.lo-ping.traffic-classes[0]"),
        (place(text, 'address = "127', '"'), "$.services.web.address"),
        (place(text, "max-hold-down", '"'), f"$.{ROUTE}.max-hold-down"),
        (place(text, "lo-pingg", '"'), f"$.{ROUTE}.probes[0].icmp-probe-profile"),
    ]


def test_duplicate_keys_are_refused_naming_both_lines() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("api:\n  listen: 127.0.0.1:1\n  listen: 127.0.0.1:2\n", "d.yaml")
    (problem,) = info.value.problems
    assert (problem.path, problem.line, problem.column) == ("$.api.listen", 3, 3)
    assert "duplicate key 'listen' (first at line 2)" in str(problem)

    with pytest.raises(ConfigError) as info:
        parse_config('[api]\nlisten = "127.0.0.1:1"\n\nlisten = "127.0.0.1:2"\n', "d.toml")
    (problem,) = info.value.problems
    assert (problem.path, problem.line) == ("$.api.listen", 4)
    assert "first at line 2" in problem.message

    with pytest.raises(ConfigError, match=r"d\.toml:3:1: error: \$\.api: duplicate key 'api'"):
        parse_config('[api]\nlisten = "127.0.0.1:1"\n[api]\n', "d.toml")


def test_yaml_merge_keys_are_not_duplicates() -> None:
    text = """\
icmp-probe-profiles:
  a: &base {probe-interval: 2, probe-address: [127.0.0.1]}
  b: {<<: *base, probe-interval: 3}
"""
    profiles = parse_config(text, "m.yaml").config.icmp_probe_profiles
    assert (profiles["a"].probe_interval, profiles["b"].probe_interval) == (2, 3)


def test_yaml_syntax_error_names_the_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("api:\n  listen: [127.0.0.1:8640\nstore: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert f"{path}:3:" in message and "YAML syntax error" in message, message
    assert "<unicode string>" not in message


def test_semantic_errors_come_all_at_once_with_lines() -> None:
    text = """\
api: {listen: 'localhost:99999'}
services:
  'we b':
    address: [127.0.0.1/33]
    service-routes:
      r1:
        next-hop: {node: edge-1, gateway-ip: 127.0.0.300}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "s.yaml")
    found = [(p.line, p.path) for p in info.value.problems]
    assert found == [
        (1, "$.api.listen"),
        (3, "$.services.we b"),
        (4, "$.services.we b.address[0]"),
        (7, "$.services.we b.service-routes.r1.next-hop.gateway-ip"),
    ]


def test_a_repaired_part_raises_no_follow_up_errors() -> None:
    """A profile refused for a bad key is not also reported as unknown where it is used."""
    text = """\
icmp-probe-profiles:
  lo-ping: {probe-address: 127.0.0.1}
services:
  web:
    service-routes:
      r1:
        next-hop: {node: edge-1}
        reachability-detection:
          hold-down: 30
          max-hold-down: fast
          probes: [{name: ping, icmp-probe-profile: lo-ping}]
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "r.yaml")
    assert [p.path for p in info.value.problems] == [
        "$.icmp-probe-profiles.lo-ping.probe-address",
        f"$.{ROUTE}.max-hold-down",
    ]


@pytest.mark.parametrize(
    ("listen", "token"),
    [("0.0.0.0:8640", "'   '"), ("127.0.0.1:8640", "''"), ("127.0.0.1:8640", "' s3cret'")],
)
def test_blank_or_padded_api_tokens_are_refused(listen: str, token: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(f"api:\n  listen: '{listen}'\n  token: {token}\n", "t.yaml")
    (problem,) = info.value.problems
    assert (problem.path, problem.line) == ("$.api.token", 3)
    assert "whitespace" in problem.message
    assert parse_config(f"api: {{listen: '{listen}', token: s3cret}}\n").config.api.token
