"""docs/internals.md ("Bounds") lists every constant of schemas/limits.py with its
value and meaning, as `bounds_table()` renders them, and the systemd units allow
the open files `SYSTEMD_NOFILE` says. `python -m tests.test_limits_doc` prints
the table to paste after a change of limits.py.
"""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

from schemas import limits

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- bounds table: generated from schemas/limits.py by tests/test_limits_doc.py -->"
END = "<!-- end of bounds table -->"


def _documented_constants() -> list[tuple[str, str]]:
    """(name, `#:` comment) of every constant of limits.py, in source order."""
    source = (ROOT / "schemas" / "limits.py").read_text()
    lines = source.splitlines()
    found: list[tuple[str, str]] = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            comment: list[str] = []
            row = node.lineno - 2
            while row >= 0 and lines[row].startswith("#:"):
                comment.insert(0, lines[row][2:].strip())
                row -= 1
            found.append((name, " ".join(comment)))
    return found


def bounds_table() -> str:
    rows = ["| bound | value | what it bounds and what happens past it |", "|---|---|---|"]
    for name, comment in _documented_constants():
        value = getattr(limits, name)
        shown = f"{value:,}" if isinstance(value, int) else f"{value:g}"
        rows.append(f"| `{name}` | {shown} | {comment} |")
    return "\n".join([BEGIN, *rows, END])


def test_every_limit_is_documented_with_its_comment() -> None:
    for name, comment in _documented_constants():
        assert comment, f"schemas/limits.py: {name} has no `#:` comment"


def test_internals_doc_lists_the_bounds_as_limits_py_says() -> None:
    doc = (ROOT / "docs" / "internals.md").read_text()
    start, end = doc.index(BEGIN), doc.index(END) + len(END)
    assert doc[start:end] == bounds_table(), "run `python -m tests.test_limits_doc`"


def test_systemd_units_allow_the_files_the_product_needs() -> None:
    for unit in sorted((ROOT / "deploy" / "systemd").glob("pathwatch-*.service")):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read_string(unit.read_text())
        assert parser["Service"].get("LimitNOFILE") == str(limits.SYSTEMD_NOFILE), unit.name
    # the HTTP servers stay well under that limit
    assert limits.MAX_HTTP_CONNECTIONS * 8 <= limits.SYSTEMD_NOFILE


if __name__ == "__main__":
    print(bounds_table())
