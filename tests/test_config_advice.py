"""Warnings for settings that cannot take effect: key path, line, and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from pathwatch.runtime.configfile import load_config, parse_config

BASE = """\
reachability-profiles:
  strict:
    tcp:
      best-effort: {acceptable-error-threshold: 10}
tcp-probe-profiles:
  web-tcp:
    probe-interval: 1
    traffic-classes: [high]
    probe-address: [127.0.0.1]
    port: 8080
services:
  web:
    address: [127.0.0.1/32]
    service-routes:
      r1:
        next-hop: {node: edge-1, interface: lo}
        reachability-detection:
          reachability-profile: strict
          probes: [{name: conn, tcp-probe-profile: web-tcp}]
"""
DETECTION = "$.services.web.service-routes.r1.reachability-detection"


def warnings_of(text: str) -> list[tuple[int | None, str, str]]:
    return [(w.line, w.path, w.message) for w in parse_config(text, "w.yaml").warnings]


def test_probe_class_without_an_entry_in_its_reachability_profile() -> None:
    found = warnings_of(BASE)
    assert (
        19,
        f"{DETECTION}.probes[0]",
        "probe 'conn' measures tcp/high, which reachability-profile 'strict' has no entry for"
        " (tcp.high): judged against the defaults (error 25 %, time-to-establishment max"
        " 500 ms / mean 250 ms)",
    ) in found
    assert (4, "$.reachability-profiles.strict.tcp.best-effort") in [w[:2] for w in found]
    fixed = BASE.replace("traffic-classes: [high]", "traffic-classes: [best-effort]")
    assert warnings_of(fixed) == []


@pytest.mark.parametrize(
    ("old", "new", "path", "words"),
    [
        (
            "reachability-profile: strict",
            "reachability-profile: strict\n          enabled: false",
            f"{DETECTION}.enabled",
            "reachability-detection is disabled",
        ),
        (
            "reachability-profile: strict",
            "reachability-profile: strict\n          probe-type: disabled",
            f"{DETECTION}.probe-type",
            "the 1 probes listed are not run",
        ),
        (
            "interface: lo}",
            "interface: lo, source-address: '::1'}",
            f"{DETECTION}.probes[0]",
            "(IPv4) from next-hop.source-address ::1 (IPv6): it cannot be sent",
        ),
        (
            "best-effort: {acceptable-error-threshold: 10}",
            "high: {time-to-establishment: {max: 0, mean: 0}}",
            "$.reachability-profiles.strict.tcp.high.time-to-establishment",
            "it checks nothing",
        ),
        (
            "services:",
            "passive: {classifier: mark, port-classes: {443: high}}\nservices:",
            "$.passive.port-classes",
            "only read by classifier port",
        ),
        (
            "services:",
            "http-probe-profiles: {h: {url: 'http://127.0.0.1:1/', up-delay-timer: 5s}}\nservices:",
            "$.http-probe-profiles.h.up-delay-timer",
            "not implemented yet",
        ),
    ],
)
def test_settings_that_cannot_take_effect(old: str, new: str, path: str, words: str) -> None:
    text = BASE.replace("traffic-classes: [high]", "traffic-classes: [best-effort]")
    changed = text.replace(old, new, 1)
    assert changed != text
    found = [(line, p, message) for line, p, message in warnings_of(changed) if p == path]
    assert found and words in found[0][2], warnings_of(changed)
    assert found[0][0] is not None


def test_sla_lanes_that_can_never_gather_min_samples() -> None:
    text = """\
icmp-probe-profiles:
  lo: {probe-interval: 10, number-of-attempts: 1, probe-address: [127.0.0.1]}
services:
  web:
    service-routes:
      r1:
        next-hop: {node: edge-1}
        reachability-detection:
          detection-window: 20
          min-samples: 3
          probes: [{name: ping, icmp-probe-profile: lo}]
"""
    found = warnings_of(text)
    assert found == [
        (
            10,
            f"{DETECTION}.min-samples",
            "probe 'ping' gathers at most 2 samples per address in a 20 s window, fewer than"
            " min-samples (3): its SLA is never judged",
        )
    ]
    assert warnings_of(text.replace("number-of-attempts: 1", "number-of-attempts: 2")) == []


@pytest.mark.parametrize(
    "path", [None, Path(__file__).resolve().parents[1] / "deploy/examples/pathwatch.yaml"]
)
def test_shipped_configs_have_no_warnings(path: Path | None) -> None:
    assert load_config(path).warnings == []
