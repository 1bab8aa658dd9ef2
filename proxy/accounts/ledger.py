"""Opening the ledger for an admin command (the CLI): a store closed on exit."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from .errors import AccountError
from storage import open_store
from storage.base import LedgerMissing, Store


@asynccontextmanager
async def open_ledger(path: str, create: bool = False) -> AsyncIterator[Store]:
    """The store at ``path`` (a file path or a ledger URL: storage.open_store), closed on
    exit. Unless ``create``, a ledger that does not exist is refused rather than created
    empty (an admin command run in the wrong directory). A ledger that needs a schema
    migration is refused (MigrationNeeded: ``cheaplm db migrate``), never migrated under
    a gateway that may be running on it."""
    try:
        store = await open_store(path, create=create, upgrade=False)
    except LedgerMissing as missing:
        raise AccountError(f"{missing} (run `cheaplm serve` or `cheaplm user create` first, or pass --db)") from None
    try:
        yield store
    finally:
        await store.aclose()
