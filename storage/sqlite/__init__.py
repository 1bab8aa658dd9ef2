"""The SQLite Store: one file (or ``:memory:``), one connection, one writer lane."""

from .lane import QUIET
from .store import SqliteStore

__all__ = ["QUIET", "SqliteStore"]
