"""YAML config text: plain data, the place of every key path, duplicate keys refused.

PyYAML's composer (libyaml's when present) gives a node tree with marks; the
safe constructor turns it into data and the same tree is walked for the marks.
Merge keys (`<<`) are not duplicates. Anchors can make a small text name many
paths, so at most `MAX_SPOTS` paths are located.
"""

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pathwatch.runtime.configtext import ParsedText, Position, Spot
from schemas.problems import KeyPath, Problem

MAX_SPOTS = 100_000
_MERGE_TAG = "tag:yaml.org,2002:merge"
#: libyaml's loader when PyYAML has it (about 15 times faster), else the pure-Python one.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _position(node: Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _syntax_problem(exc: yaml.YAMLError) -> Problem:
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return Problem((), f"YAML syntax error: {exc}")
    mark = exc.problem_mark
    context = f" ({exc.context} at line {exc.context_mark.line + 1})" if exc.context_mark else ""
    return Problem(
        (),
        f"YAML syntax error: {exc.problem}{context}",
        line=mark.line + 1,
        column=mark.column + 1,
    )


def _key_of(loader: Any, node: Node) -> object:
    value = loader.construct_object(node, deep=True)
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _duplicates(loader: Any, root: Node) -> list[Problem]:
    """Keys given twice in one mapping (merged keys do not count), with both lines."""
    problems: list[Problem] = []
    stack: list[tuple[Node, KeyPath]] = [(root, ())]
    seen: set[int] = set()
    while stack:
        node, keys = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, SequenceNode):
            stack.extend((item, (*keys, index)) for index, item in enumerate(node.value))
        if not isinstance(node, MappingNode):
            continue
        first: dict[object, Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = _key_of(loader, key_node)
            if key in first:
                line = _position(first[key])[0]
                problems.append(
                    Problem(
                        (*keys, key),  # type: ignore[arg-type]
                        f"duplicate key {key!r} (first at line {line})",
                        at_key=True,
                        line=_position(key_node)[0],
                        column=_position(key_node)[1],
                    )
                )
            first.setdefault(key, key_node)
            stack.append((value_node, (*keys, key)))  # type: ignore[arg-type]
    return problems


def _spots(loader: Any, root: Node) -> dict[KeyPath, Spot]:
    spots: dict[KeyPath, Spot] = {}
    stack: list[tuple[Node, KeyPath, Position | None]] = [(root, (), None)]
    while stack and len(spots) < MAX_SPOTS:
        node, keys, key_position = stack.pop()
        spots[keys] = Spot(key_position, _position(node), isinstance(node, ScalarNode))
        if isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                key = _key_of(loader, key_node)
                stack.append((value_node, (*keys, key), _position(key_node)))  # type: ignore[arg-type]
        elif isinstance(node, SequenceNode):
            stack.extend((item, (*keys, index), None) for index, item in enumerate(node.value))
    return spots


def parse_yaml(text: str, source: str) -> ParsedText:
    """Data, spots and problems of YAML `text` read from `source`."""
    loader = _LOADER(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return ParsedText({})
        duplicates = _duplicates(loader, root)
        data = loader.construct_document(root)
        return ParsedText(data, _spots(loader, root), duplicates)
    except yaml.YAMLError as exc:
        return ParsedText(None, problems=[_syntax_problem(exc)])
    finally:
        loader.dispose()
