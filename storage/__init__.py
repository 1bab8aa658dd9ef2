"""Storage: the Store protocol (base) and its implementations (sqlite)."""

from __future__ import annotations

from .base import Store


async def open_store(path: str) -> Store:
    """The store for a path: a SQLite file (``:memory:`` for throwaway use).

    PostgreSQL DSNs will be recognised here when that store lands."""
    from .sqlite import SqliteStore

    return await SqliteStore.open(path)
