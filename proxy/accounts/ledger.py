"""Opening the ledger for an admin command (the CLI): a store closed on exit."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import AsyncIterator

from .errors import AccountError
from storage import open_store, parse_location
from storage.base import Store


@asynccontextmanager
async def open_ledger(path: str, create: bool = False) -> AsyncIterator[Store]:
    """The store at ``path`` (a file path or a ledger URL: storage.open_store), closed on
    exit. Unless ``create``, a ledger file that does not exist is refused rather than
    created empty (an admin command run in the wrong directory)."""
    location = parse_location(path)
    if not create and location.file is not None and not os.path.exists(location.file):
        raise AccountError(f"no ledger at {location.shown} (run `cheaplm serve` or `cheaplm user create` "
                           "first, or pass --db)")
    store = await open_store(path)
    try:
        yield store
    finally:
        await store.aclose()
