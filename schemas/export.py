"""JSON Schema export of every wire message type and of the config file."""

import json
from pathlib import Path

import msgspec

from schemas.config import PathwatchConfig
from schemas.wire import MESSAGE_TYPES


def schema_documents() -> dict[str, dict[str, object]]:
    """File name -> JSON Schema document, one per message type plus the config."""
    documents: dict[str, dict[str, object]] = {}
    kinds: tuple[type[msgspec.Struct], ...] = (*MESSAGE_TYPES, PathwatchConfig)
    for kind in kinds:
        schema = msgspec.json.schema(kind)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = kind.__name__
        documents[f"{kind.__name__}.schema.json"] = schema
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
