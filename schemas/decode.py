"""Decoding raw config data (from YAML or TOML) into the model with every error at once.

`msgspec.convert` stops at the first error, so the raw tree is walked against
the model's type annotations: each scalar is checked on its own with msgspec
(so the rules stay msgspec's), each mapping for unknown and missing keys, each
list item by itself. Duration keys (`schemas.units`) take strings with units,
turned into numbers of the key's unit before the check.

A part with an error is repaired so the rest can still be checked: a key with
a default falls back to it, a bad list item or dict entry is dropped, and a
section that cannot be repaired drops with its parent entry. `Decoded.repaired`
lists the key paths repaired, so later checks can skip findings about them.
"""

import difflib
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, Literal, TypeVar, get_args, get_origin

import msgspec

from schemas.durations import DurationError, parse_duration
from schemas.problems import KeyPath, Problem
from schemas.units import duration_unit, unwrap

T = TypeVar("T", bound=msgspec.Struct)
_DROP = object()
_TYPE_NAMES = {dict: "a mapping", list: "a list", str: "a string", bool: "true or false"}


@dataclass
class Decoded(Generic[T]):
    """The model (None when the file could not be repaired into one) and the findings."""

    model: T | None
    problems: list[Problem] = field(default_factory=list)
    repaired: list[KeyPath] = field(default_factory=list)


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _msgspec_message(exc: msgspec.ValidationError, annotation: object, given: str) -> str:
    """msgspec's message without its `- at $` tail, with the value `given` (as written)."""
    message = str(exc).partition(" - at `")[0]
    base, _ = unwrap(annotation)
    if message.startswith("Invalid enum value") and get_origin(base) is Literal:
        choices = ", ".join(str(choice) for choice in get_args(base))
        return f"expected one of {choices}, got {given}"
    message = message[0].lower() + message[1:]
    if ", got" not in message:
        message += f", got {given}"
    return message


def _is_struct(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)


def _required(info: msgspec.structs.FieldInfo) -> bool:
    return info.default is msgspec.NODEFAULT and info.default_factory is msgspec.NODEFAULT


class _Walk:
    """One pass over the raw tree; collects problems and repaired paths."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.repaired: list[KeyPath] = []

    def fail(self, keys: KeyPath, message: str, *, at_key: bool = False) -> object:
        self.problems.append(Problem(keys, message, at_key=at_key))
        return _DROP

    def value(self, raw: object, annotation: object, keys: KeyPath) -> object:
        base, metadata = unwrap(annotation)
        if _is_struct(base):
            return self.section(raw, base, keys)  # type: ignore[arg-type]
        origin = get_origin(base)
        if origin is dict:
            return self.mapping(raw, base, metadata, keys)
        if origin is list:
            return self.sequence(raw, base, metadata, keys)
        return self.scalar(raw, annotation, keys)

    def section(self, raw: object, cls: type[msgspec.Struct], keys: KeyPath) -> object:
        if not isinstance(raw, dict):
            return self.fail(keys, f"expected a mapping, got {_type_name(raw)}")
        infos = {info.encode_name: info for info in msgspec.structs.fields(cls)}
        out: dict[object, object] = {}
        whole = True
        for name, item in raw.items():
            info = infos.get(name) if isinstance(name, str) else None
            if info is None:
                self.unknown((*keys, name), name, list(infos))
                continue
            checked = self.value(item, info.type, (*keys, name))
            if checked is not _DROP:
                out[name] = checked
            elif _required(info):
                whole = False
            else:
                self.repaired.append((*keys, name))
        for name, info in infos.items():
            if _required(info) and name not in raw:
                self.fail(keys, f"missing required key {name!r}")
                whole = False
        return out if whole else _DROP

    def unknown(self, keys: KeyPath, name: object, known: list[str]) -> None:
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        self.fail(keys, f"unknown key {name!r}{hint}", at_key=True)
        self.repaired.append(keys)

    def mapping(
        self, raw: object, base: object, metadata: tuple[object, ...], keys: KeyPath
    ) -> object:
        if not isinstance(raw, dict):
            return self.fail(keys, f"expected a mapping, got {_type_name(raw)}")
        key_type, value_type = get_args(base)
        out: dict[object, object] = {}
        for name, item in raw.items():
            try:
                msgspec.convert({name: None}, dict[key_type, Any], str_keys=True)  # type: ignore[valid-type]
            except msgspec.ValidationError as exc:
                self.fail((*keys, name), _msgspec_message(exc, key_type, repr(name)), at_key=True)
                self.repaired.append((*keys, name))
                continue
            checked = self.value(item, value_type, (*keys, name))
            if checked is _DROP:
                self.repaired.append((*keys, name))
            else:
                out[name] = checked
        return self.container(out, dict[Any, Any], metadata, keys)

    def sequence(
        self, raw: object, base: object, metadata: tuple[object, ...], keys: KeyPath
    ) -> object:
        if not isinstance(raw, list):
            return self.fail(keys, f"expected a list, got {_type_name(raw)}")
        (item_type,) = get_args(base)
        out: list[object] = []
        for index, item in enumerate(raw):
            checked = self.value(item, item_type, (*keys, index))
            if checked is _DROP:
                self.repaired.append((*keys, index))
            else:
                out.append(checked)
        return self.container(out, list[Any], metadata, keys)

    def container(
        self, out: object, bare: object, metadata: tuple[object, ...], keys: KeyPath
    ) -> object:
        """Constraints on the container itself (such as a minimum length)."""
        if not metadata:
            return out
        try:
            msgspec.convert(out, Annotated[(bare, *metadata)])
        except msgspec.ValidationError as exc:
            return self.fail(keys, _msgspec_message(exc, bare, repr(out)))
        return out

    def scalar(self, raw: object, annotation: object, keys: KeyPath) -> object:
        unit = duration_unit(annotation)
        value = raw
        if unit is not None and isinstance(raw, str):
            try:
                value = parse_duration(raw, unit)
            except DurationError as exc:
                return self.fail(keys, str(exc))
        try:
            msgspec.convert(value, annotation, str_keys=True)
        except msgspec.ValidationError as exc:
            given = repr(raw) if value is raw else f"{raw!r} (= {value:g} {unit})"
            return self.fail(keys, _msgspec_message(exc, annotation, given))
        return value


def decode(raw: object, model: type[T]) -> Decoded[T]:
    """Every structural problem of `raw` as `model`, and the model of its repaired form."""
    walk = _Walk()
    checked = walk.value(raw, model, ())
    decoded: Decoded[T] = Decoded(None, walk.problems, walk.repaired)
    if checked is _DROP:
        return decoded
    try:
        decoded.model = msgspec.convert(checked, model, str_keys=True)
    except msgspec.ValidationError as exc:  # a rule the walk does not know: report it as is
        message, _, where = str(exc).partition(" - at `")
        decoded.problems.append(Problem((), f"{message} (at {where.rstrip('`') or '$'})"))
    return decoded
