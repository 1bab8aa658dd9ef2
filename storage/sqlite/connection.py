"""Opening a SQLite ledger: the connection's settings and its migrations."""

from __future__ import annotations

import sqlite3

import sqlite_utils

from ..base import StoreUnavailable
from .migrations import migrate
from .transactions import unavailable


def connect(path: str, busy_timeout: float) -> sqlite_utils.Database:
    """The migrated database at ``path``; StoreUnavailable (one line) if it cannot be
    opened or written: a missing or read-only directory, a locked or damaged file."""
    conn = None
    try:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=busy_timeout)
        db = sqlite_utils.Database(conn)
        db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        if path != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        migrate(db, busy_timeout)
        # From here on a locked database never blocks a statement: writers wait in
        # begin_immediate (in the worker thread), and an operation run inline on the
        # event loop gives way to the thread instead of waiting.
        db.execute("PRAGMA busy_timeout=0")
        return db
    except Exception as exc:
        if conn is not None:
            conn.close()
        mapped = unavailable(exc)
        if mapped is None:
            raise
        raise StoreUnavailable(f"cannot open the ledger {path}: {_reason(exc)}", mapped.retry_after) from None


def _reason(exc: BaseException) -> str:
    text = str(exc).removeprefix("the ledger is unavailable: ").removeprefix("the ledger is busy: ")
    if "unable to open" in text or "readonly" in text:
        text += " (does its directory exist, and may this user write there?)"
    return text
