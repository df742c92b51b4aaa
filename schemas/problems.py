"""One finding about a config file: where it is, what was expected, how bad it is.

Checks name the place by key path (a tuple of mapping keys and list indexes);
the config loader adds the file, line and column once it has located the path.
Printed as `file:line:column: error: $.key.path: what was expected`.
"""

from dataclasses import dataclass
from typing import Literal

KeyPath = tuple[str | int, ...]
Severity = Literal["error", "warning"]


def render_path(keys: KeyPath) -> str:
    """`$.services.web.service-routes.r1.probes[0]` for a key path."""
    return "$" + "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in keys)


def is_under(keys: KeyPath, prefix: KeyPath) -> bool:
    """True when `keys` is `prefix` or lies inside it."""
    return keys[: len(prefix)] == prefix


@dataclass(frozen=True)
class Problem:
    """A config error or warning at `keys`.

    `at_key` points the location at the key itself rather than its value (unknown
    or duplicate keys, bad names); `refers` lists other key paths the finding
    depends on, so a finding about a part that had to be repaired is not reported.
    """

    keys: KeyPath
    message: str
    severity: Severity = "error"
    at_key: bool = False
    refers: tuple[KeyPath, ...] = ()
    source: str = ""
    line: int | None = None
    column: int | None = None

    @property
    def path(self) -> str:
        return render_path(self.keys)

    @property
    def where(self) -> str:
        """`file:line:column`, `file` or '' as far as known."""
        if self.line is None:
            return self.source
        return f"{self.source}:{self.line}:{self.column}"

    def __str__(self) -> str:
        where = f"{self.where}: " if self.where else ""
        return f"{where}{self.severity}: {self.path}: {self.message}"
