"""Opening a SQLite ledger: the writer connection (its settings and migrations) and
the event loop's read-only connection."""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Callable

import sqlite_utils

from ..errors import LedgerMissing, StoreUnavailable
from .migrations import migrate
from .transactions import unavailable


class SqliteDb(sqlite_utils.Database):
    """A SQLite database as the shared SQL operations call it (storage/sql/db.py)."""

    IntegrityError = sqlite3.IntegrityError

    def executemany(self, sql: str, rows) -> sqlite3.Cursor:
        return self.conn.executemany(sql, rows)


def connect(path: str, busy_timeout: float, *, create: bool = True,
            upgrade: bool = True) -> tuple[sqlite_utils.Database, list[str]]:
    """The migrated database at ``path`` and the migrations applied in opening it;
    StoreUnavailable (one line) if it cannot be opened or written: a missing or
    read-only directory, a locked or damaged file. ``create``, ``upgrade``: whether a
    missing ledger may be created, an older one migrated (migrations.migrate)."""
    shown = os.path.abspath(path) if path != ":memory:" else path
    if not create and path != ":memory:" and not os.path.exists(path):
        raise LedgerMissing(f"no ledger at {shown}")
    applied: list[str] = []

    def setup(db: sqlite_utils.Database) -> None:
        db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        if path != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        applied[:] = migrate(db, busy_timeout, shown, create=create, upgrade=upgrade)
        # From here on a locked database never blocks a statement: writers wait in
        # begin_immediate, in the worker thread, where they can be retried.
        db.execute("PRAGMA busy_timeout=0")

    return _open(path, busy_timeout, setup), applied


def connect_reader(path: str, busy_timeout: float = 0) -> sqlite_utils.Database:
    """A connection that can only read: the event loop's (reader.py) or one of the read
    path's (pool.py). It never writes, so it never commits frames, never runs an
    auto-checkpoint (off here as well, in case) and never fsyncs. The loop's never waits
    for a lock (busy timeout 0: a busy database raises at once); the read path's, in
    worker threads, wait up to ``busy_timeout``. Opened after ``connect`` has migrated
    the file."""
    def setup(db: sqlite_utils.Database) -> None:
        db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        db.execute("PRAGMA wal_autocheckpoint=0")
        db.execute("PRAGMA query_only=1")

    return _open(path, busy_timeout, setup)


# How long opening waits out a lock at the least (connect_reader has no busy timeout of
# its own): a new file is switched to WAL, and migrated, under an exclusive lock, and
# SQLite answers "locked" at once to a connection opening meanwhile, busy handler or not.
OPEN_LOCK_WAIT = 5.0


def _open(path: str, busy_timeout: float, setup: Callable[[sqlite_utils.Database], None]) -> sqlite_utils.Database:
    """Runs in a worker thread (the store opens there), so it may wait out a lock."""
    deadline = time.monotonic() + max(busy_timeout, OPEN_LOCK_WAIT)
    while True:
        conn = None
        try:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=busy_timeout)
            db = SqliteDb(conn)
            setup(db)
            return db
        except Exception as exc:
            if conn is not None:
                conn.close()
            mapped = unavailable(exc)
            if mapped is None:
                raise
            if "locked" in str(exc).lower() and time.monotonic() < deadline:
                time.sleep(0.01)  # another connection is creating or migrating the file
                continue
            where = os.path.abspath(path) if path != ":memory:" else path
            raise StoreUnavailable(f"cannot open the ledger at {where}: {_reason(exc, where)}",
                                   mapped.retry_after) from None


def _reason(exc: BaseException, path: str) -> str:
    """Why the ledger could not be opened, in the operator's terms."""
    text = str(exc).removeprefix("the ledger is unavailable: ").removeprefix("the ledger is busy: ")
    if "unable to open" not in text:
        return text
    parent = os.path.dirname(path)
    if os.path.isdir(path):
        return "it is a directory"
    if not os.path.exists(parent):
        return f"directory {parent} does not exist"
    if not os.path.isdir(parent):
        return f"{parent} is not a directory"
    if os.path.exists(path):
        return "unable to open database file (check its permissions)"
    return f"unable to create a database file in {parent} (check that directory's permissions)"
