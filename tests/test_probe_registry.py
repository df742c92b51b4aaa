"""The probe-kind registry (schemas.probekinds) drives the config sections, the wire's
protocols, the enforcer's reachability protocols, the metrics and the agent's probes."""

from __future__ import annotations

import msgspec
import pytest

from agents.probe.registry import BUILTIN, EXCHANGES, PREFLIGHTS
from agents.probeplan import build_plan, preflight
from aggregator.metrics import TTE_PROTOCOLS as METRICS_TTE
from enforcer.route_spec import REACHABILITY_PROTOCOLS
from pathwatch.runtime.configfile import ConfigError, parse_config
from schemas.config import PathwatchConfig, ProbeRef, ReachabilityProfile
from schemas.probekinds import CONFIRM_KINDS, KIND_NAMES, KINDS, TTE_PROTOCOLS
from schemas.wire import PROTOCOLS, Measurement


def test_every_kind_has_its_config_keys_protocol_and_probe() -> None:
    config_keys = set(PathwatchConfig.__struct_encode_fields__)
    ref_keys = set(ProbeRef.__struct_encode_fields__)
    tables = set(ReachabilityProfile.__struct_encode_fields__)
    for kind in KINDS:
        assert kind.profiles_key in config_keys and kind.ref_key in ref_keys
        assert kind.protocol in PROTOCOLS
        assert (
            (kind.protocol in tables)
            == kind.reachability
            == (kind.protocol in REACHABILITY_PROTOCOLS)
        )
    assert set(BUILTIN) == set(KIND_NAMES)
    assert set(EXCHANGES) == CONFIRM_KINDS
    assert set(PREFLIGHTS) == {"icmp"}
    assert METRICS_TTE is TTE_PROTOCOLS and "dns" in TTE_PROTOCOLS


def test_the_wire_takes_the_registry_protocols_only() -> None:
    ok = msgspec.json.encode(
        {"ts": 1.0, "protocol": "dns", "traffic_class": "high", "outcome": "ok"}
    )
    assert msgspec.json.decode(ok, type=Measurement).protocol == "dns"
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(ok.replace(b'"dns"', b'"gopher"'), type=Measurement)


def test_a_probe_names_exactly_one_kind() -> None:
    text = """
dns-probe-profiles:
  d: {probe-address: [127.0.0.1], query-name: ok.test}
udp-probe-profiles:
  u: {probe-address: [127.0.0.1], port: 53}
services:
  s:
    service-routes:
      r:
        next-hop: {node: n1}
        reachability-detection:
          probes: [{name: p, dns-probe-profile: d, udp-probe-profile: u}]
"""
    with pytest.raises(ConfigError, match="expected exactly one of icmp-probe-profile"):
        parse_config(text)
    loaded = parse_config(text.replace(", udp-probe-profile: u", ""))
    plans = build_plan(loaded.config, None, None)
    assert [(p.kind, [t.address for t in p.targets]) for p in plans[0].probes] == [
        ("dns", ["127.0.0.1"])
    ]
    preflight(plans)  # no check for DNS: nothing to fail


def test_each_kind_checks_its_own_keys() -> None:
    text = """
http-probe-profiles:
  h: {url: "ftp://files"}
dns-probe-profiles:
  d: {probe-address: [127.0.0.1], query-name: ok.test, expect-address: [nope]}
"""
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    message = str(raised.value)
    assert "http-probe-profiles.h.url: expected an http(s) URL with a host" in message
    assert "dns-probe-profiles.d.expect-address: expected an IP address, got 'nope'" in message
