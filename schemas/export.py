"""JSON Schema export of every wire message type and of the config file.

The config's schema carries, on every property, the description, unit and
default of `schemas.catalog`, and lets duration keys be strings with units
(`30s`, `200ms`), so editors show and check them as pathwatch does.
"""

import json
from pathlib import Path
from typing import Any

import msgspec

from schemas.catalog import config_keys
from schemas.config import PathwatchConfig
from schemas.durations import DURATION_PATTERN
from schemas.wire import MESSAGE_TYPES

_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def config_schema() -> dict[str, Any]:
    """The config file's JSON Schema, with a description on every property."""
    schema = msgspec.json.schema(PathwatchConfig)
    definitions: dict[str, Any] = schema["$defs"]
    for key in config_keys():
        properties = definitions[key.owner.__name__]["properties"]
        prop: dict[str, Any] = properties[key.name]
        prop.pop("description", None)
        if key.duration:
            default = prop.pop("default", None)
            prop = {"anyOf": [prop, {"type": "string", "pattern": DURATION_PATTERN}]}
            if default is not None:
                prop["default"] = default
        prop["description"] = key.summary()
        properties[key.name] = prop
    return schema


def schema_documents() -> dict[str, dict[str, object]]:
    """File name -> JSON Schema document, one per message type plus the config."""
    documents: dict[str, dict[str, object]] = {}
    for kind in MESSAGE_TYPES:
        documents[f"{kind.__name__}.schema.json"] = msgspec.json.schema(kind)
    documents[f"{PathwatchConfig.__name__}.schema.json"] = config_schema()
    for name, schema in documents.items():
        schema["$schema"] = _DIALECT
        schema["title"] = name.removesuffix(".schema.json")
    return documents


def export(directory: Path) -> list[Path]:
    """Write every schema into `directory`; return the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in schema_documents().items():
        path = directory / name
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
