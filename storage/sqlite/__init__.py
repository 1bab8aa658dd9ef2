"""The SQLite Store: one file (or ``:memory:``), one writer connection behind one
writer lane (its thread), a pool of read-only connections for every other read (the
read path, in threads), and a read-only connection for key lookups on the loop."""

from .store import SqliteStore

__all__ = ["SqliteStore"]
