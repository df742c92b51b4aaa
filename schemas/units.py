"""How a config key says what it is: one `Meta` with its description and unit.

A key is declared once, in `schemas.config`, as
`name: Annotated[float, seconds("What it does.", ge=0, le=60)] = 5`: the type,
the range, the description, the unit and the default all sit on that line, and
the JSON Schema export, `docs/config.md` and the decoder (which lets duration
keys take `30s` / `200ms`) read them from there.
"""

import types
from typing import Annotated, Any, Union, get_args, get_origin

from msgspec import Meta

from schemas.durations import Unit as DurationUnit

#: Units a key may carry; `s` and `ms` are durations (they also take `30s`, `200ms`).
UNIT_NAMES: dict[str, str] = {"s": "seconds", "ms": "milliseconds", "%": "percent"}


def key(description: str, *, unit: str | None = None, **constraints: Any) -> Meta:
    """The Meta of a key: its description, its unit (if any) and its range."""
    extra = {"unit": unit} if unit is not None else None
    return Meta(description=description, extra=extra, **constraints)


def seconds(description: str, **constraints: Any) -> Meta:
    """A duration in seconds (`5`, `5s`, `1m30s`, `200ms`)."""
    return key(description, unit="s", **constraints)


def millis(description: str, **constraints: Any) -> Meta:
    """A duration in milliseconds (`250`, `250ms`, `0.25s`)."""
    return key(description, unit="ms", **constraints)


def percent(description: str, **constraints: Any) -> Meta:
    """A percentage, 0 to 100."""
    return key(description, unit="%", **{"ge": 0, "le": 100, **constraints})


def unwrap(annotation: object) -> tuple[object, tuple[object, ...]]:
    """(the bare type, the Annotated metadata) of a type annotation."""
    if get_origin(annotation) is Annotated:
        base, *metadata = get_args(annotation)
        return base, tuple(metadata)
    return annotation, ()


def _members(annotation: object) -> tuple[object, ...]:
    base, _ = unwrap(annotation)
    if get_origin(base) in (Union, types.UnionType):
        return get_args(base)
    return (annotation,)


def meta_value(annotation: object, name: str) -> Any:
    """The last `Meta.<name>` (description, extra...) on the annotation or its union members."""
    found: Any = None
    for member in (annotation, *_members(annotation)):
        for item in unwrap(member)[1]:
            if isinstance(item, Meta) and getattr(item, name) is not None:
                found = getattr(item, name)
    return found


def unit_of(annotation: object) -> str | None:
    """The unit declared on a key's annotation (`s`, `ms`, `%`) or None."""
    extra = meta_value(annotation, "extra")
    return extra.get("unit") if isinstance(extra, dict) else None


def duration_unit(annotation: object) -> DurationUnit | None:
    """`s` or `ms` when the key is a duration, else None."""
    unit = unit_of(annotation)
    if unit == "s":
        return "s"
    if unit == "ms":
        return "ms"
    return None
