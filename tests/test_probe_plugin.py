"""Plugin probe kinds through the `pathwatch.probes` entry-point group.

The example plugin (tests/plugins/pw_example_probe.py) is registered the way
an installed distribution would be: a `*.dist-info` directory with
`METADATA` and `entry_points.txt` on sys.path.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.probe.registry import ENTRY_POINT_GROUP, UnknownProbeKind, load_plugin, plugin_names
from agents.probeplan import build_plan
from pathwatch.runtime.configfile import parse_config

PLUGINS_DIR = Path(__file__).parent / "plugins"

CONFIG = """
services:
  web:
    service-routes:
      r1:
        next-hop: {node: n1, interface: lo}
        reachability-detection:
          probes:
            - name: custom
              plugin: %s
              options:
                {number-of-attempts: "3", traffic-classes: "high,low", probe-address: "127.0.0.1"}
"""


@pytest.fixture
def example_plugin(tmp_path: Path) -> Iterator[str]:
    dist = tmp_path / "pw_example_probe-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pw-example-probe\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nexample = pw_example_probe:probe_example\n"
    )
    sys.path[:0] = [str(tmp_path), str(PLUGINS_DIR)]
    try:
        yield "example"
    finally:
        sys.path.remove(str(tmp_path))
        sys.path.remove(str(PLUGINS_DIR))
        sys.modules.pop("pw_example_probe", None)


def test_plugin_missing_without_its_distribution() -> None:
    assert "example" not in plugin_names()
    with pytest.raises(UnknownProbeKind, match="unknown probe plugin 'example'"):
        load_plugin("example")


async def test_plugin_found_through_entry_point_and_run_per_class(example_plugin: str) -> None:
    assert example_plugin in plugin_names()
    config = parse_config(CONFIG % example_plugin).config
    plans = build_plan(config, "n1", None)
    (probe,) = plans[0].probes
    assert probe.kind == "example"
    assert [(t.traffic_class, t.dscp, t.interface) for t in probe.targets] == [
        ("high", 46, "lo"),
        ("low", 18, "lo"),
    ]
    items = [
        m
        for target in probe.targets
        for m in await probe.func(target, probe.profile, time.monotonic() + 1)
    ]
    assert len(items) == 6
    assert {m.traffic_class for m in items} == {"high", "low"}
    assert all(m.outcome == "ok" and m.latency_ms == len("127.0.0.1") for m in items)


def test_unknown_plugin_is_an_error_at_start(example_plugin: str) -> None:
    config = parse_config(CONFIG % "no-such-kind").config
    with pytest.raises(UnknownProbeKind, match="no-such-kind"):
        build_plan(config, None, None)
