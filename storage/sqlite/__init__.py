"""The SQLite Store: one file (or ``:memory:``), one writer connection behind one
writer lane (its thread), and a read-only connection for key lookups on the loop."""

from .store import SqliteStore

__all__ = ["SqliteStore"]
