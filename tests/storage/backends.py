"""The backends the Store contract runs against: every contract test runs against each
entry of BACKENDS; ``shared`` says whether several stores (and processes) can open
one database, which the multi-instance tests need.

PostgreSQL (127.0.0.1:5432, user postgres, trust auth, as on the machine and in CI):
the session's database (tests/conftest.py's pg_database, created fresh and uniquely named
for the run, dropped at its end) holds one schema per test (``fresh_schema``, as the
both_stores tests have), so tests never see each other's rows; its tests skip, with the
reason, only when the server cannot be reached."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Iterator

from storage import open_store, parse_location

from ..conftest import fresh_schema


@dataclass
class Backend:
    """One database for one test: ``url`` is what open_store takes."""

    name: str
    url: str

    async def open(self, instance_id: str | None = "inst-a", **kwargs):
        return await open_store(self.url, instance_id=instance_id, **kwargs)

    def raw(self):
        """A plain DB-API connection to the same database in autocommit mode, for tests
        that damage it (its ``execute`` takes SQL that every backend understands)."""
        raise NotImplementedError

    def write_locked(self) -> ContextManager[None]:
        """Another connection holding the write lock (or the rows' locks) meanwhile."""
        raise NotImplementedError


class SqliteBackend(Backend):
    def raw(self) -> sqlite3.Connection:
        return sqlite3.connect(parse_location(self.url).target, isolation_level=None)

    @contextmanager
    def write_locked(self) -> Iterator[None]:
        other = self.raw()
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()


class PostgresBackend(Backend):
    """A schema of its own in the session's database (the URL's search_path)."""

    def __init__(self, name: str, database_url: str) -> None:
        super().__init__(name, fresh_schema(database_url))

    def raw(self):
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    @contextmanager
    def write_locked(self) -> Iterator[None]:
        """Another transaction holding the tables' write locks (reads go on)."""
        other = self.raw()
        other.execute("BEGIN")
        other.execute("LOCK TABLE accounts, holds, instances IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()


@dataclass(frozen=True)
class BackendSpec:
    name: str
    shared: bool                          # several stores can open the same database
    make: Callable[[Path, str | None], Backend]  # a fresh database (tmp_path, the session's PostgreSQL database)
    postgres: bool = False


BACKENDS: tuple[BackendSpec, ...] = (
    BackendSpec("sqlite", True, lambda tmp, pg: SqliteBackend("sqlite", f"sqlite://{tmp}/s.db")),  # sqlite:///abs
    BackendSpec("sqlite-memory", False, lambda tmp, pg: SqliteBackend("sqlite-memory", ":memory:")),
    BackendSpec("postgresql", True, lambda tmp, pg: PostgresBackend("postgresql", pg), postgres=True),
)
