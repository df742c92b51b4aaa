"""Names that appear in NATS subjects and KV keys (service, route, node, agent)."""

import re
from typing import Annotated

from msgspec import Meta

NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
_NAME_RE = re.compile(NAME_PATTERN)
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_-]")

#: A name that is safe to put in a subject token: letters, digits, `_` and `-`.
Name = Annotated[str, Meta(pattern=NAME_PATTERN, min_length=1, max_length=64)]


def is_subject_safe(name: str) -> bool:
    """True when `name` may be used as one subject token."""
    return len(name) <= 64 and _NAME_RE.match(name) is not None


def subject_token(text: str) -> str:
    """`text` made subject-safe: other characters become `-`, at most 64 ("default"
    when nothing is left)."""
    return _UNSAFE_RE.sub("-", text)[:64] or "default"
