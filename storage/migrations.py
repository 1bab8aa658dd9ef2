"""Named, ordered schema migrations, each run in a transaction and recorded in ``_migrations``."""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Callable, Iterator

import sqlite_utils


def _initial(db: sqlite_utils.Database) -> None:
    db["accounts"].create({
        "id": int, "username": str, "balance": int, "held": int, "created_at": str,
    }, pk="id", not_null={"username", "balance", "held", "created_at"}, defaults={"balance": 0, "held": 0})
    db["accounts"].create_index(["username"], unique=True)
    db["api_keys"].create({
        "id": int, "account_id": int, "prefix": str, "key_hash": str, "name": str,
        "models": str, "allow_stream": int, "ips": str, "pass_thinking": int,
        "created_at": str, "last_used_at": str, "revoked_at": str,
    }, pk="id", foreign_keys=[("account_id", "accounts", "id")],
        not_null={"account_id", "prefix", "key_hash", "name", "allow_stream", "created_at"})
    db["api_keys"].create_index(["prefix"], unique=True)
    db["api_keys"].create_index(["account_id"])
    db["ledger"].create({
        "id": int, "account_id": int, "delta": int, "balance_after": int, "kind": str,
        "ref": str, "paid": int, "created_at": str,
    }, pk="id", foreign_keys=[("account_id", "accounts", "id")],
        not_null={"account_id", "delta", "balance_after", "kind", "created_at"})
    db["ledger"].create_index(["account_id", "id"])
    db["holds"].create({
        "id": int, "account_id": int, "amount": int, "request_id": str, "state": str, "created_at": str,
    }, pk="id", foreign_keys=[("account_id", "accounts", "id")],
        not_null={"account_id", "amount", "request_id", "state", "created_at"})
    db.execute("CREATE INDEX idx_holds_open ON holds(state) WHERE state = 'open'")
    db["usage"].create({
        "request_id": str, "key_id": int, "account_id": int, "model": str, "endpoint": str,
        "stream": int, "status": int, "input_tokens": int, "cache_write_5m": int,
        "cache_write_1h": int, "cache_read": int, "output_tokens": int, "cost": int,
        "partial": int, "error_type": str, "latency_ms": float, "ttft_ms": float, "created_at": str,
    }, pk="request_id", not_null={"key_id", "account_id", "model", "endpoint", "status", "cost", "created_at"})
    db["usage"].create_index(["account_id", "created_at"])


MIGRATIONS: tuple[tuple[str, Callable[[sqlite_utils.Database], None]], ...] = (
    ("0001_initial", _initial),
)


class Busy(Exception):
    """Another connection (the admin CLI, say) holds the write lock."""


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
                raise Busy(str(exc)) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


@contextmanager
def immediate(db: sqlite_utils.Database, wait: float = 30.0) -> Iterator[sqlite_utils.Database]:
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
        db.rollback()
        raise
    db.conn.execute("COMMIT")


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply the migrations not yet recorded; return the names applied."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row["name"] for row in db.query("SELECT name FROM _migrations")}
    applied = []
    for name, step in MIGRATIONS:
        if name in done:
            continue
        with immediate(db):
            step(db)
            db.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                       (name, datetime.now(timezone.utc).isoformat()))
        applied.append(name)
    return applied
