"""How the CLI prints: a table (the default) or, with ``--json``, one JSON document.
Nothing is printed raw that could fake a line or drive the terminal: every control or
invisible character in a cell or a message is escaped (a username that ends in a
newline shows as ``root\\n``)."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable

from ..accounts.checks import shown


def cell(value: Any) -> str:
    return shown(str(value))


def table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("(none)")
        return
    columns = list(rows[0])
    cells = [[cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


def document(value: Any) -> None:
    """One JSON document on stdout (non-ASCII escaped, so control characters are too)."""
    print(json.dumps(value, ensure_ascii=True))


def rows(items: Iterable[dict[str, Any]], as_json: bool, key: str = "data", **extra: Any) -> None:
    """A listing: a table, or ``{"data": [...], ...extra}``."""
    listed = list(items)
    if as_json:
        document({key: listed, **extra})
    else:
        table(listed)


def record(item: dict[str, Any], as_json: bool) -> None:
    """One thing (a balance): a one-row table, or its JSON object."""
    if as_json:
        document(item)
    else:
        table([item])


def line(text: str) -> None:
    print(shown(text))


def note(text: str) -> None:
    """A remark for the person at the terminal (stderr: never part of a JSON document)."""
    print(shown(text), file=sys.stderr)
