"""Names that appear in NATS subjects and KV keys (service, route, node, agent)."""

import re
from typing import Annotated

from msgspec import Meta

NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
_NAME_RE = re.compile(NAME_PATTERN)

#: A name that is safe to put in a subject token: letters, digits, `_` and `-`.
Name = Annotated[str, Meta(pattern=NAME_PATTERN, min_length=1, max_length=64)]


def is_subject_safe(name: str) -> bool:
    """True when `name` may be used as one subject token."""
    return len(name) <= 64 and _NAME_RE.match(name) is not None
