"""Config text (YAML or TOML) into plain data plus the line and column of every key.

`parse_text` picks the format by file name (`.toml`, else YAML). Syntax errors
and duplicate keys come back as problems that already carry their line and
column; `locate` gives any other problem the place of its key path (or of the
nearest enclosing key that is in the file).
"""

from dataclasses import dataclass, field, replace

from schemas.problems import KeyPath, Problem

#: (line, column), both counted from 1.
Position = tuple[int, int]


@dataclass(frozen=True)
class Spot:
    """Where a key path sits: its key (None for list items) and its value."""

    key: Position | None
    value: Position
    scalar: bool


@dataclass
class ParsedText:
    """`data` is None when the text could not be parsed at all."""

    data: object
    spots: dict[KeyPath, Spot] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def parse_text(text: str, source: str) -> ParsedText:
    """Parse YAML, or TOML when `source` ends in `.toml`."""
    if source.endswith(".toml"):
        from pathwatch.runtime.config_toml import parse_toml

        return parse_toml(text, source)
    from pathwatch.runtime.config_yaml import parse_yaml

    return parse_yaml(text, source)


def locate(problem: Problem, spots: dict[KeyPath, Spot], source: str) -> Problem:
    """`problem` with the file, line and column of its key path, as far as known."""
    if problem.line is not None:
        return replace(problem, source=source)
    keys = problem.keys
    while keys and keys not in spots:
        keys = keys[:-1]
    spot = spots.get(keys)
    if spot is None:
        return replace(problem, source=source)
    exact = keys == problem.keys
    prefer_key = (problem.at_key or not spot.scalar or not exact) and spot.key is not None
    line, column = spot.key if prefer_key and spot.key is not None else spot.value
    return replace(problem, source=source, line=line, column=column)
