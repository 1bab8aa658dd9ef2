"""SQLite transactions: the write transaction (BEGIN IMMEDIATE, waited for without
blocking a statement), the read snapshot, and the one place where sqlite3 errors
that mean "the database cannot serve now" become StoreUnavailable."""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from typing import Iterator

import sqlite_utils

from ..errors import StoreBusy, StoreUnavailable

LOCK_RETRY_AFTER = 1  # seconds a client is told to wait after the write lock was not had in time
FAULT_RETRY_AFTER = 2  # ... after a disk or file fault

# Primary result codes (the low byte of sqlite_errorcode) that mean the store cannot
# serve right now, and what the operator is told.
_UNAVAILABLE = {
    5: "the database is locked by another connection",   # SQLITE_BUSY
    6: "the database is locked by another connection",   # SQLITE_LOCKED
    8: "the database is read-only",                      # SQLITE_READONLY
    10: "disk I/O error",                                # SQLITE_IOERR
    11: "the database file is damaged",                  # SQLITE_CORRUPT
    13: "the database or disk is full",                  # SQLITE_FULL
    14: "the database file cannot be opened",            # SQLITE_CANTOPEN
    26: "the file is not a database",                    # SQLITE_NOTADB
}
_UNAVAILABLE_MESSAGES = ("locked", "busy", "readonly database", "disk i/o error", "disk is full",
                         "unable to open database file", "malformed", "not a database")


class Busy(Exception):
    """Another connection holds the write lock (raised only by a wait=0 attempt, which
    then gives way to the writer thread)."""


def unavailable(exc: BaseException) -> StoreUnavailable | None:
    """The StoreUnavailable an sqlite3 error amounts to, or None if it is not one
    (a bug, a constraint: those keep their own type)."""
    if isinstance(exc, StoreUnavailable):
        return exc
    if isinstance(exc, Busy):
        return StoreBusy("the ledger is busy: " + (str(exc) or "locked by another connection"), LOCK_RETRY_AFTER)
    if not isinstance(exc, (sqlite3.OperationalError, sqlite3.DatabaseError)) or isinstance(
            exc, sqlite3.IntegrityError):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    reason = _UNAVAILABLE.get(code & 0xFF) if isinstance(code, int) else None
    text = str(exc).lower()
    if reason is None and not any(m in text for m in _UNAVAILABLE_MESSAGES):
        return None
    if (code is not None and code & 0xFF in (5, 6)) or "locked" in text:
        return StoreBusy(f"the ledger is unavailable: {exc}", LOCK_RETRY_AFTER)
    return StoreUnavailable(f"the ledger is unavailable: {exc}", FAULT_RETRY_AFTER)


def begin_immediate(db: sqlite_utils.Database, wait: float) -> None:
    """BEGIN IMMEDIATE, retrying for up to ``wait`` seconds while another connection
    holds the write lock (the connection's own busy timeout is 0, so that a caller on
    the event loop is never blocked by it); raises Busy when the wait is over."""
    deadline = time.monotonic() + wait
    pause = 0.001
    while True:
        try:
            db.conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() + pause > deadline:
                raise Busy(f"{exc} (waited {wait:g} s)") from None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


def _end(db: sqlite_utils.Database, statement: str) -> None:
    try:
        db.conn.execute(statement)
    except BaseException:
        if db.conn.in_transaction:  # a failed COMMIT may leave the transaction open
            db.conn.execute("ROLLBACK")
        raise


@contextmanager
def immediate(db: sqlite_utils.Database, wait: float) -> Iterator[sqlite_utils.Database]:
    """A write transaction that takes the write lock up front (BEGIN IMMEDIATE), or
    a savepoint when a transaction is already open (a group commit's batch).

    sqlite-utils operations inside it nest as savepoints. Taking the lock first
    means a writer never has to upgrade a read lock, which another process (the
    admin CLI) could otherwise make fail with SQLITE_BUSY.
    """
    if db.conn.in_transaction:
        with db.atomic():
            yield db
        return
    begin_immediate(db, wait)
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    _end(db, "COMMIT")


@contextmanager
def savepoint(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """Inside a transaction: a part that is undone alone if it raises."""
    with db.atomic():
        yield db


@contextmanager
def snapshot(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """A read transaction: one consistent view, without taking the write lock (in WAL
    mode writers go on meanwhile)."""
    db.conn.execute("BEGIN")
    try:
        yield db
    finally:
        _end(db, "ROLLBACK")
