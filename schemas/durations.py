"""The one duration parser of pathwatch: config keys, CLI options and NSM_* variables.

A duration is a plain number in the caller's unit (seconds or milliseconds) or
a string of one or more `<number><unit>` parts: `30s`, `200ms`, `5m`, `1h`,
`1m30s`, `1.5s`, `2d`. Units: ns, us (µs), ms, s, m, h, d, w. Negative values,
unknown units, an empty text and anything else are refused with a message that
says what was expected. Arithmetic is exact (Decimal), so `200ms` is exactly
`0.2` seconds.

A hand-written parser rather than a library: Go-style parsers on PyPI accept
text between the parts (`1s--2s`) or months and years of no fixed length.
"""

import re
from decimal import Decimal, InvalidOperation
from typing import Literal

Unit = Literal["s", "ms"]

#: Nanoseconds per unit.
_UNIT_NS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 604_800_000_000_000,
}
_NS_PER: dict[Unit, int] = {"s": _UNIT_NS["s"], "ms": _UNIT_NS["ms"]}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PART = re.compile(rf"\s*({_NUMBER})\s*([^\d\s.]+)")
_PLAIN = re.compile(rf"\s*{_NUMBER}\s*")
_UNIT_ALTERNATIVES = "|".join(sorted(_UNIT_NS, key=len, reverse=True))
#: What a duration string looks like (the JSON Schema `pattern` of duration keys).
DURATION_PATTERN = rf"^\s*(?:{_NUMBER}|(?:{_NUMBER}\s*(?:{_UNIT_ALTERNATIVES})\s*)+)\s*$"
UNITS_HELP = "ns, us, ms, s, m, h, d, w"
UNIT_NAMES: dict[Unit, str] = {"s": "seconds", "ms": "milliseconds"}


class DurationError(ValueError):
    """Text that is not a duration; the message says what was expected."""


def _expected(text: str, unit: Unit) -> str:
    return (
        f"expected a duration such as 30s, 200ms, 5m or 1m30s, or a number of"
        f" {UNIT_NAMES[unit]}, got {text!r}"
    )


def _nanoseconds(text: str, unit: Unit) -> Decimal:
    stripped = text.strip()
    if not stripped:
        raise DurationError(f"empty duration: {_expected(text, unit)}")
    if stripped.startswith("-"):
        raise DurationError(f"a duration cannot be negative, got {text!r}")
    if _PLAIN.fullmatch(text):
        return Decimal(stripped) * _NS_PER[unit]
    total = Decimal(0)
    position = 0
    while position < len(text.rstrip()):
        part = _PART.match(text, position)
        if part is None:
            raise DurationError(_expected(text, unit))
        number, suffix = part.groups()
        if suffix not in _UNIT_NS:
            raise DurationError(f"unknown unit {suffix!r} in {text!r} (units: {UNITS_HELP})")
        total += Decimal(number) * _UNIT_NS[suffix]
        position = part.end()
    return total


def parse_duration(value: str | float, unit: Unit = "s") -> float:
    """`value` in `unit`: a number is taken as it is, a string may carry units.

    `parse_duration("1m30s") == 90.0`, `parse_duration("200ms") == 0.2`,
    `parse_duration("0.25s", "ms") == 250.0`, `parse_duration(5) == 5.0`.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DurationError(_expected(repr(value), unit))
    if not isinstance(value, str):
        if value < 0:
            raise DurationError(f"a duration cannot be negative, got {value!r}")
        return float(value)
    try:
        return float(_nanoseconds(value, unit) / _NS_PER[unit])
    except InvalidOperation:  # pragma: no cover - the patterns admit only decimals
        raise DurationError(_expected(value, unit)) from None
