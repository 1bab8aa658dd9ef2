"""What the shared SQL operations (this package) need of a database, whichever backend
holds it: ``execute(sql, params)`` (a cursor: ``fetchone``, ``fetchall``, ``rowcount``,
iteration over tuples), ``executemany``, ``query`` (rows as dicts), ``atomic()`` (a
transaction, or a savepoint inside one, undone alone if it raises) and the driver's
``IntegrityError``. The SQL is written once, with ``?`` placeholders, in the subset
SQLite and PostgreSQL share (RETURNING, ON CONFLICT, row values, window functions);
SQLite's database (storage/sqlite/connection.py) and PostgreSQL's adapter
(storage/postgres/connection.py) provide the rest."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Iterable, Protocol, Sequence


class Db(Protocol):
    IntegrityError: type[Exception]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any: ...
    def query(self, sql: str, params: Sequence[Any] = ()) -> Iterable[dict]: ...
    def atomic(self) -> AbstractContextManager: ...


def savepoint(db: Db) -> AbstractContextManager:
    """Inside a transaction: a part that is undone alone if it raises."""
    return db.atomic()
