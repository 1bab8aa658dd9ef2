"""PostgreSQL connections for the shared SQL operations (storage/sql/): ``PgDb`` wraps a
psycopg connection in the few calls those operations make of a SQLite database
(``execute`` with ``?`` placeholders, ``query`` for dict rows, ``atomic`` for a
savepoint), and the one place where psycopg's errors that mean "cannot serve now"
become StoreUnavailable (StoreBusy for a lock not had in time or a deadlock)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import psycopg
from psycopg import errors as pg_errors
from psycopg import postgres
from psycopg.adapt import Dumper, Loader
from psycopg.rows import dict_row
from psycopg_pool import PoolTimeout

from ..errors import StoreBusy, StoreUnavailable

LOCK_RETRY_AFTER = 1
FAULT_RETRY_AFTER = 2


def dialect(sql: str) -> str:
    """The shared SQL (qmark placeholders, no literal ``%`` or ``?`` in it) in psycopg's
    format style."""
    return sql.replace("?", "%s")


class IntegralNumeric(Loader):
    """PostgreSQL's SUM of a bigint is a numeric: every sum the store takes is of integer
    micro-USD or counts, so it comes back an int, as SQLite's does."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        return int(text) if text.lstrip("-").isdigit() else float(text)


class FlagAsInteger(Dumper):
    """A Python bool bound for one of the integer flag columns (0/1, as SQLite keeps them)."""

    oid = postgres.types["int4"].oid

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


def configure(conn: psycopg.Connection) -> None:
    """A new pooled connection: numerics as ints, bools as 0/1; autocommit (each
    operation opens its transaction with ``conn.transaction()``)."""
    conn.adapters.register_loader("numeric", IntegralNumeric)
    conn.adapters.register_dumper(bool, FlagAsInteger)
    conn.autocommit = True


class PgDb:
    """What the shared operations call on a database, on one psycopg connection."""

    IntegrityError = pg_errors.IntegrityError

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        return self.conn.execute(dialect(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(dialect(sql), rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict]:
        with self.conn.cursor(row_factory=dict_row) as cursor:
            return cursor.execute(dialect(sql), tuple(params)).fetchall()

    @contextmanager
    def atomic(self) -> Iterator["PgDb"]:
        """A transaction, or a savepoint inside one: undone alone if it raises."""
        with self.conn.transaction():
            yield self


def unavailable(exc: BaseException) -> StoreUnavailable | None:
    """The StoreUnavailable a psycopg error amounts to, or None (a bug, a constraint)."""
    if isinstance(exc, StoreUnavailable):
        return exc
    if isinstance(exc, (pg_errors.LockNotAvailable, pg_errors.DeadlockDetected, pg_errors.SerializationFailure)):
        return StoreBusy(f"the ledger is busy: {_first_line(exc)}", LOCK_RETRY_AFTER)
    if isinstance(exc, (psycopg.OperationalError, pg_errors.AdminShutdown, pg_errors.DiskFull,
                        pg_errors.InsufficientResources, pg_errors.ReadOnlySqlTransaction)):
        return StoreUnavailable(f"the ledger is unavailable: {_first_line(exc)}", FAULT_RETRY_AFTER)
    if isinstance(exc, PoolTimeout):
        return StoreBusy(f"the ledger is busy: no database connection free ({_first_line(exc)})", LOCK_RETRY_AFTER)
    return None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
