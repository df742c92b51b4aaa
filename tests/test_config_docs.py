"""The config's JSON Schema and docs/config.md: every key described with unit and default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schemas.catalog import config_keys
from schemas.configdoc import render
from schemas.export import config_schema, export

DOCS = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def _properties(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (owner, name, prop)
        for owner, definition in schema["$defs"].items()
        for name, prop in definition.get("properties", {}).items()
    ]


def test_every_schema_property_has_a_description_with_unit_and_default() -> None:
    properties = _properties(config_schema())
    assert len(properties) >= 158
    units = {(k.owner.__name__, k.name): k.unit_text for k in config_keys()}
    for owner, name, prop in properties:
        text = prop.get("description", "")
        assert len(text) > 20, (owner, name)
        assert "Default: " in text or "Required." in text, (owner, name, text)
        if units[(owner, name)]:
            assert f"Unit: {units[(owner, name)]}" in text, (owner, name, text)


@pytest.mark.parametrize(
    ("owner", "name", "words"),
    [
        ("ReachabilityDetection", "hold-down", ("Unit: seconds", "Default: 60.")),
        ("TimeToEstablishment", "max", ("Unit: milliseconds", "Default: 500.")),
        ("ClassThresholds", "acceptable-error-threshold", ("Unit: percent", "Default: 25.")),
        ("IcmpProbeProfile", "probe-address", ("Required.",)),
        ("NatsConfig", "url", ('Default: "embedded".',)),
    ],
)
def test_descriptions_name_the_right_unit_and_default(
    owner: str, name: str, words: tuple[str, ...]
) -> None:
    text = config_schema()["$defs"][owner]["properties"][name]["description"]
    assert all(word in text for word in words), text


def test_the_schema_takes_durations_with_units_as_the_loader_does() -> None:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    validator = jsonschema_rs.validator_for(config_schema())
    route = {"next-hop": {"node": "n"}, "reachability-detection": {"hold-down": "1m30s"}}
    config: dict[str, Any] = {"services": {"s": {"service-routes": {"r": route}}}}
    assert validator.is_valid(config)
    route["reachability-detection"]["hold-down"] = "90 parsecs"
    assert not validator.is_valid(config)
    route["reachability-detection"]["hold-down"] = 90
    assert validator.is_valid(config)


def test_schema_export_writes_the_described_config_schema(tmp_path: Path) -> None:
    export(tmp_path)
    written = json.loads((tmp_path / "PathwatchConfig.schema.json").read_text())
    assert all("description" in prop for _, _, prop in _properties(written))


def test_docs_config_md_is_up_to_date() -> None:
    assert DOCS.read_text() == render(), (
        "docs/config.md is stale: run `pathwatch config docs > docs/config.md`"
    )


def test_docs_config_md_lists_every_key() -> None:
    text = render()
    for key in config_keys():
        assert f"| `{key.path}` |" in text, key.path
