"""The backends the Store contract runs against. A PostgreSQL backend joins with one
more entry in BACKENDS (and its own ``raw``/``write_locked``): every contract test then
runs against it too; ``shared`` says whether several stores (and processes) can open
one database, which the multi-instance tests need."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Iterator

from storage import open_store, parse_location


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


@dataclass(frozen=True)
class BackendSpec:
    name: str
    shared: bool                          # several stores can open the same database
    make: Callable[[Path], Backend]       # a fresh database under the test's tmp_path


BACKENDS: tuple[BackendSpec, ...] = (
    BackendSpec("sqlite", True, lambda tmp: SqliteBackend("sqlite", f"sqlite://{tmp}/s.db")),  # sqlite:///abs
    BackendSpec("sqlite-memory", False, lambda tmp: SqliteBackend("sqlite-memory", ":memory:")),
)
