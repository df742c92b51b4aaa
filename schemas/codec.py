"""Encoding and checked decoding of wire messages.

`decode_message` never raises anything but `DecodeError`, whose `reason` is a
short, countable label: `size` (over `limits.MAX_MESSAGE_BYTES`), `depth` (nested
deeper than the interpreter's recursion limit, `limits.MAX_NESTING_DEPTH`),
`json`, `schema`, `version`.
"""

from typing import Any, TypeVar

import msgspec

from schemas.limits import MAX_MESSAGE_BYTES
from schemas.wire import SCHEMA_VERSION

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


class DecodeError(ValueError):
    """A message that cannot be accepted; `reason` is a label for counters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def encode(message: msgspec.Struct) -> bytes:
    """Encode a wire message (or any Struct) as JSON."""
    return _encoder.encode(message)


def _decoder(kind: type[T]) -> msgspec.json.Decoder[T]:
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = msgspec.json.Decoder(kind)
        _decoders[kind] = decoder
    return decoder


def decode_message(data: bytes, kind: type[T]) -> T:
    """Decode `data` as `kind`, checking the schema version.

    Raises DecodeError with reason `size` (too big), `depth` (nested too deep),
    `json` (not JSON), `version` (unknown `v`) or `schema` (JSON of the wrong
    shape or out-of-range values).
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError("size", f"{len(data)} bytes, at most {MAX_MESSAGE_BYTES}")
    try:
        message = _decoder(kind).decode(data)
    except msgspec.ValidationError as exc:
        _raise_version_if_wrong(data)
        raise DecodeError("schema", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise DecodeError("json", str(exc)) from None
    except RecursionError:
        # msgspec recurses once per nesting level, against the interpreter's limit
        raise DecodeError("depth", "nested deeper than the recursion limit") from None
    version = getattr(message, "v", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise DecodeError("version", f"schema version {version}, expected {SCHEMA_VERSION}")
    return message


class _Versioned(msgspec.Struct):
    v: Any = None


def _raise_version_if_wrong(data: bytes) -> None:
    try:
        version = msgspec.json.decode(data, type=_Versioned).v
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return
    if version is not None and version != SCHEMA_VERSION:
        raise DecodeError("version", f"schema version {version!r}, expected {SCHEMA_VERSION}")
