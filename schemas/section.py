"""The base of every config section and the small value types sections share."""

from typing import Annotated

from msgspec import Meta, Struct


class ConfigSection(Struct, frozen=True, kw_only=True, rename="kebab", forbid_unknown_fields=True):
    """Base of config sections: kebab-case keys, unknown keys refused."""


Port = Annotated[int, Meta(ge=1, le=65535)]
Addresses = Annotated[list[str], Meta(min_length=1)]
Uint32 = Annotated[int, Meta(ge=0, le=4294967295)]
