"""Every config key with its path, type, unit, default and description, read from the model.

The one place the JSON Schema export (`schemas.export`) and `docs/config.md`
(`schemas.configdoc`) learn what a key is; both therefore follow
`schemas.config` without a hand-kept list.
"""

import types
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

import msgspec
from msgspec import Meta

from schemas.config import PathwatchConfig
from schemas.units import UNIT_NAMES, duration_unit, meta_value, unit_of, unwrap
from schemas.wire import TrafficClass

_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string"}
_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


@dataclass(frozen=True)
class KeyDoc:
    """One key of the config file."""

    path: str
    owner: type[msgspec.Struct]
    name: str
    type_text: str
    unit: str | None
    duration: bool
    default: str | None
    description: str

    @property
    def unit_text(self) -> str:
        return UNIT_NAMES.get(self.unit or "", self.unit or "")

    def summary(self) -> str:
        """Description, unit and default in one text (the JSON Schema `description`)."""
        parts = [self.description]
        if self.duration:
            parts.append(
                f"Unit: {self.unit_text} (or a duration with units such as 30s, 200ms, 1m30s)."
            )
        elif self.unit:
            parts.append(f"Unit: {self.unit_text}.")
        parts.append("Required." if self.default is None else f"Default: {self.default}.")
        return " ".join(parts)


def _members(annotation: object) -> list[object]:
    base, _ = unwrap(annotation)
    if get_origin(base) in (Union, types.UnionType):
        return list(get_args(base))
    return [annotation]


def _bounds(annotation: object) -> str:
    metas = [item for item in unwrap(annotation)[1] if isinstance(item, Meta)]
    found = {
        name: getattr(m, name) for m in metas for name, _ in _BOUNDS if getattr(m, name) is not None
    }
    if "ge" in found and "le" in found:
        return f" {found['ge']:g} to {found['le']:g}"
    text = ", ".join(f"{sign} {found[name]:g}" for name, sign in _BOUNDS if name in found)
    return f" {text}" if text else ""


def type_text(annotation: object, duration: bool | None = None) -> str:
    """`number 1 to 3600`, `duration > 0`, `list of string`, `one of ecmp, best`, `section`..."""
    if duration is None:
        duration = duration_unit(annotation) is not None
    members = _members(annotation)
    if len(members) > 1:
        texts = [type_text(m, duration) for m in members if m is not type(None)]
        return " or ".join([*texts, "null"])
    base, _ = unwrap(annotation)
    if isinstance(base, type) and issubclass(base, msgspec.Struct):
        return "section"
    if base is TrafficClass:
        return "traffic class (" + ", ".join(get_args(TrafficClass)) + ")"
    if get_origin(base) is Literal:
        return "one of " + ", ".join(str(choice) for choice in get_args(base))
    if get_origin(base) is list:
        return f"list of {type_text(get_args(base)[0])}"
    if get_origin(base) is dict:
        key_type, value_type = get_args(base)
        key_text = "traffic class" if key_type is TrafficClass else type_text(key_type)
        return f"mapping of {key_text} to {type_text(value_type)}"
    name = "duration" if duration else _SCALARS.get(base, str(base))  # type: ignore[call-overload]
    return name + _bounds(annotation)


def _default(info: msgspec.structs.FieldInfo) -> str | None:
    if info.default is not msgspec.NODEFAULT:
        value: Any = info.default
    elif info.default_factory is not msgspec.NODEFAULT:
        value = info.default_factory()
    else:
        return None
    if isinstance(value, msgspec.Struct):
        return "the defaults of its keys"
    return msgspec.json.encode(value).decode()


def _nested(annotation: object) -> tuple[type[msgspec.Struct], str] | None:
    """The section type below a key and the path step to it (`.<name>`, `[]`)."""
    base, _ = unwrap(annotation)
    step = ""
    if get_origin(base) is dict:
        key_type, base = get_args(base)
        step = ".<class>" if key_type is TrafficClass else ".<name>"
        base, _ = unwrap(base)
    elif get_origin(base) is list:
        step = "[]"
        base, _ = unwrap(get_args(base)[0])
    if isinstance(base, type) and issubclass(base, msgspec.Struct):
        return base, step
    return None


def _walk(cls: type[msgspec.Struct], prefix: str, out: list[KeyDoc]) -> None:
    for info in msgspec.structs.fields(cls):
        path = f"{prefix}{info.encode_name}"
        unit = unit_of(info.type)
        out.append(
            KeyDoc(
                path=path,
                owner=cls,
                name=info.encode_name,
                type_text=type_text(info.type),
                unit=unit,
                duration=duration_unit(info.type) is not None,
                default=_default(info),
                description=meta_value(info.type, "description") or "",
            )
        )
        nested = _nested(info.type)
        if nested is not None:
            _walk(nested[0], f"{path}{nested[1]}.", out)


def config_keys(model: type[msgspec.Struct] = PathwatchConfig) -> list[KeyDoc]:
    """Every key of `model`, depth first in declaration order."""
    out: list[KeyDoc] = []
    _walk(model, "", out)
    return out
