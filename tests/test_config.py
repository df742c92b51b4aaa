"""Config loading: defaults, key paths of structural and semantic errors, warnings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from pathwatch.runtime.configfile import ConfigError, load_config, parse_config
from schemas.config import PathwatchConfig

ROUTE = """
services:
  web:
    address: [127.0.0.1/32]
    service-routes:
      r1:
        next-hop: {node: edge-1, interface: lo}
        reachability-detection:
          detection-window: 5
          probes: [{name: ping, icmp-probe-profile: lo-ping}]
icmp-probe-profiles:
  lo-ping: {probe-interval: 1, probe-address: [127.0.0.1]}
"""


def error_paths(text: str, source: str = "t.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source)
    return [problem.path for problem in info.value.problems]


def test_embedded_default_is_valid_and_loopback_only() -> None:
    loaded = load_config(None)
    assert loaded.warnings == []
    config = loaded.config
    assert config.nats.url == "embedded"
    assert config.api.listen == "127.0.0.1:8640"
    for profile in config.icmp_probe_profiles.values():
        assert all(a.startswith("127.") or a == "::1" for a in profile.probe_address)
    for tcp_profile in config.tcp_probe_profiles.values():
        assert all(a.startswith("127.") for a in tcp_profile.probe_address)


def test_router_defaults_fill_in() -> None:
    config = parse_config(ROUTE).config
    profile = config.icmp_probe_profiles["lo-ping"]
    assert (profile.number_of_attempts, profile.probe_duration) == (4, 1)
    assert profile.sla_metrics.max_loss == 10
    assert (profile.sla_metrics.latency.max, profile.sla_metrics.latency.mean) == (250, 100)
    detection = config.services["web"].service_routes["r1"].reachability_detection
    assert detection.hold_down == 60 and detection.consecutive_failures == 3
    assert config.dscp("high") == 46 and config.dscp("best-effort") == 0


@pytest.mark.parametrize(
    ("patch", "expected_path"),
    [
        ("probe-interval: 0.5", "$.icmp-probe-profiles.lo-ping.probe-interval"),
        ("number-of-attempts: 21", "$.icmp-probe-profiles.lo-ping.number-of-attempts"),
        ("probe-duration: 11", "$.icmp-probe-profiles.lo-ping.probe-duration"),
        ("probe-interval: 3601", "$.icmp-probe-profiles.lo-ping.probe-interval"),
    ],
)
def test_probe_ranges_name_the_key(patch: str, expected_path: str) -> None:
    text = ROUTE.replace("probe-interval: 1", patch)
    assert error_paths(text) == [expected_path]


def test_percentages_and_unknown_keys() -> None:
    text = ROUTE + "reachability-profiles:\n  p: {tcp: {high: {acceptable-error-threshold: 101}}}\n"
    assert error_paths(text) == ["$.reachability-profiles.p.tcp.high.acceptable-error-threshold"]
    assert error_paths("nats: {urll: x}\n") == ["$.nats.urll"]


def test_unknown_references_and_bad_names() -> None:
    text = ROUTE.replace("icmp-probe-profile: lo-ping", "icmp-probe-profile: nope").replace(
        "detection-window: 5", "detection-window: 5\n          reachability-profile: gone"
    )
    paths = error_paths(text)
    base = "$.services.web.service-routes.r1.reachability-detection"
    assert f"{base}.reachability-profile" in paths
    assert f"{base}.probes[0].icmp-probe-profile" in paths
    assert error_paths(ROUTE.replace("r1:", "'r.1':")) == ["$.services.web.service-routes.r.1"]
    assert error_paths(ROUTE.replace("web:", "_web:")) == ["$.services._web"]
    assert error_paths(ROUTE.replace("node: edge-1", "node: 'edge 1'")) == [
        "$.services.web.service-routes.r1.next-hop.node"
    ]


def test_duplicate_probe_names_and_exactly_one_profile() -> None:
    dup = ROUTE.replace(
        "probes: [{name: ping, icmp-probe-profile: lo-ping}]",
        "probes: [{name: ping, icmp-probe-profile: lo-ping},"
        " {name: ping, icmp-probe-profile: lo-ping}]",
    )
    assert error_paths(dup) == [
        "$.services.web.service-routes.r1.reachability-detection.probes[1].name"
    ]
    none = ROUTE.replace("{name: ping, icmp-probe-profile: lo-ping}", "{name: ping}")
    assert error_paths(none) == [
        "$.services.web.service-routes.r1.reachability-detection.probes[0]"
    ]


def test_api_off_loopback_needs_token() -> None:
    assert error_paths("api: {listen: '0.0.0.0:8640'}\n") == ["$.api.token"]
    parse_config("api: {listen: '0.0.0.0:8640', token: s3cret}\n")


def test_warnings_for_bouncing_and_unused_profiles() -> None:
    loaded = parse_config(
        ROUTE.replace("probe-interval: 1", "probe-interval: 5")
        + "reachability-profiles:\n  unused: {}\n"
    )
    messages = [str(w) for w in loaded.warnings]
    assert any("would bounce" in m for m in messages), messages
    assert any("unused" in m and "reachability-profiles.unused" in m for m in messages)


def test_toml_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[nats]\nurl = "nats://127.0.0.1:4222"\n[api]\nlisten = "127.0.0.1:9999"\n')
    assert load_config(path).config.api.listen == "127.0.0.1:9999"
    path.write_text("[nats\n")
    with pytest.raises(ConfigError, match=r"c\.toml:1:6: error: \$: TOML syntax error"):
        load_config(path)


def test_cli_check_exit_codes_and_message(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(ROUTE)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        ROUTE.replace("number-of-attempts", "x").replace("probe-interval: 1", "probe-interval: 0")
    )
    cmd = [sys.executable, "-m", "pathwatch", "config", "check"]
    ok = subprocess.run([*cmd, str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    failed = subprocess.run([*cmd, str(bad)], capture_output=True, text=True)
    assert failed.returncode == 2
    assert str(bad) in failed.stderr
    assert "$.icmp-probe-profiles.lo-ping.probe-interval" in failed.stderr
    missing = subprocess.run([*cmd, str(tmp_path / "none.yaml")], capture_output=True, text=True)
    assert missing.returncode == 2 and "cannot read file" in missing.stderr


def test_every_default_is_within_its_own_range() -> None:
    """A default a user could not write back (hourly retention was above its cap) is a bug."""
    written = msgspec.to_builtins(PathwatchConfig())
    assert msgspec.convert(written, PathwatchConfig) == PathwatchConfig()
