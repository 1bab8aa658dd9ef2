"""The change feed (every backend): one row per change of what running gateways cache
(a key, an account's disabled flag or free tier, a channel override), written by the
operation that makes the change, in its own transaction, so a change is never committed
without its notice. Every running gateway reads the rows after the last one it saw
(``after``: one indexed range read) a few times a second (proxy/shared/changes.py).

Rows older than ``KEEP_SECONDS`` are removed by the next change: a gateway reads them
within a second, and one that could not read the store for longer forgets its whole
key cache when it can again."""

from __future__ import annotations

from ..records import CHANGE_KINDS, Change
from .db import Db

KEEP_SECONDS = 3600.0


def note(db: Db, now: float, kind: str, name: str) -> None:
    """Inside the changing operation's transaction: the notice that ``name`` changed."""
    assert kind in CHANGE_KINDS, kind
    db.execute("DELETE FROM changes WHERE at < ?", (now - KEEP_SECONDS,))
    db.execute("INSERT INTO changes (kind, name, at) VALUES (?, ?, ?)", (kind, name, now))


def after(db: Db, last: int, limit: int) -> list[Change]:
    """The notices after id ``last``, oldest first, at most ``limit``."""
    return [Change(*row) for row in db.execute(
        "SELECT id, kind, name, at FROM changes WHERE id > ? ORDER BY id LIMIT ?", (last, limit)).fetchall()]


def last(db: Db) -> int:
    """The newest notice's id (0: none yet)."""
    return db.execute("SELECT COALESCE(MAX(id), 0) FROM changes").fetchone()[0]
