"""TOML config text: plain data (tomllib), the place of every key path (tree-sitter).

tomllib keeps no positions, so the same text is also parsed by tree-sitter's
TOML grammar, whose syntax tree has a position for every key, table header and
value; walking it with TOML's rules for dotted keys, `[table]` and
`[[array of tables]]` headers gives the place of each key path. Keys and
tables defined twice are reported with both lines (tomllib only names the
second).
"""

import re
import tomllib
from dataclasses import dataclass, field

import tree_sitter
import tree_sitter_toml

from pathwatch.runtime.configtext import ParsedText, Position, Spot
from schemas.problems import KeyPath, Problem

_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_KEY_TYPES = ("bare_key", "quoted_key", "dotted_key")
_PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_toml.language()))


def _key_text(node: tree_sitter.Node) -> str:
    text = (node.text or b"").decode()
    if node.type == "quoted_key":
        return next(iter(tomllib.loads(f"{text} = 0")))
    return text


def _key_parts(node: tree_sitter.Node) -> tuple[str, ...]:
    if node.type == "dotted_key":
        return tuple(part for child in node.named_children for part in _key_parts(child))
    return (_key_text(node),)


@dataclass
class _Walk:
    """One pass over the syntax tree; `lines` turns byte columns into characters."""

    lines: list[bytes]
    spots: dict[KeyPath, Spot] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    defined: dict[KeyPath, Position] = field(default_factory=dict)
    last_element: dict[KeyPath, int] = field(default_factory=dict)

    def position(self, node: tree_sitter.Node) -> Position:
        row, column = node.start_point
        line = self.lines[row] if row < len(self.lines) else b""
        return row + 1, len(line[:column].decode(errors="replace")) + 1

    def define(self, keys: KeyPath, node: tree_sitter.Node) -> None:
        position = self.position(node)
        first = self.defined.setdefault(keys, position)
        if first != position:
            self.problems.append(
                Problem(
                    keys,
                    f"duplicate key {keys[-1]!r} (first at line {first[0]})",
                    at_key=True,
                    line=position[0],
                    column=position[1],
                )
            )

    def resolve(self, parts: tuple[str, ...]) -> KeyPath:
        """A header's key path, entering the last element of each array of tables."""
        keys: KeyPath = ()
        for part in parts:
            keys = (*keys, part)
            if keys in self.last_element:
                keys = (*keys, self.last_element[keys])
        return keys

    def document(self, root: tree_sitter.Node) -> None:
        for child in root.named_children:
            if child.type == "pair":
                self.pair(child, ())
            elif child.type in ("table", "table_array_element"):
                self.table(child)

    def table(self, node: tree_sitter.Node) -> None:
        header = next(child for child in node.named_children if child.type in _KEY_TYPES)
        parts = _key_parts(header)
        place = self.position(node)
        if node.type == "table":
            keys = self.resolve(parts)
            self.define(keys, node)
        else:
            array = (*self.resolve(parts[:-1]), parts[-1])
            index = self.last_element.get(array, -1) + 1
            self.last_element[array] = index
            keys = (*array, index)
            self.spots[keys] = Spot(place, place, False)
        for end in range(1, len(keys) + 1):
            self.spots.setdefault(keys[:end], Spot(place, place, False))
        for child in node.named_children:
            if child.type == "pair":
                self.pair(child, keys)

    def pair(self, node: tree_sitter.Node, prefix: KeyPath) -> None:
        key, value = node.named_children[0], node.named_children[-1]
        parts = _key_parts(key)
        keys: KeyPath = prefix
        for part in parts[:-1]:
            keys = (*keys, part)
            self.spots.setdefault(keys, Spot(self.position(key), self.position(key), False))
        keys = (*keys, parts[-1])
        self.define(keys, key)
        self.value(value, keys, self.position(key))

    def value(self, node: tree_sitter.Node, keys: KeyPath, key: Position | None) -> None:
        nested = node.type in ("inline_table", "array")
        self.spots[keys] = Spot(key, self.position(node), not nested)
        if node.type == "inline_table":
            for child in node.named_children:
                if child.type == "pair":
                    self.pair(child, keys)
        elif node.type == "array":
            items = [child for child in node.named_children if child.type != "comment"]
            for index, item in enumerate(items):
                self.value(item, (*keys, index), None)


def _syntax_problem(exc: tomllib.TOMLDecodeError) -> Problem:
    message = str(exc)
    at = _AT.search(message)
    if at is None:
        return Problem((), f"TOML syntax error: {message}")
    return Problem(
        (),
        f"TOML syntax error: {message[: at.start()]}",
        line=int(at.group(1)),
        column=int(at.group(2)),
    )


def parse_toml(text: str, source: str) -> ParsedText:
    """Data, spots and problems of TOML `text` (`source` names it in messages)."""
    encoded = text.encode()
    walk = _Walk(encoded.split(b"\n"))
    root = _PARSER.parse(encoded).root_node
    if not root.has_error:  # tomllib names the syntax error; then no places are needed
        walk.document(root)
    try:
        data: object = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return ParsedText(None, walk.spots, walk.problems or [_syntax_problem(exc)])
    return ParsedText(data, walk.spots, walk.problems)
