"""Small builders the storage tests share: usage rows, a funded user with a key."""

from __future__ import annotations

import sqlite3

import sqlite_utils

from storage.base import UsageRow
from storage.sqlite.migrations import MIGRATIONS

LEASE = 60.0


def row(request_id: str, key_id: int, cost: int, **kw) -> UsageRow:
    kw.setdefault("status", 200)
    return UsageRow(request_id=request_id, key_id=key_id, model="claude-sonnet-4.5", endpoint="messages",
                    stream=False, cost=cost, **kw)


def partial_row(request_id: str, key_id: int, cost: int) -> UsageRow:
    return row(request_id, key_id, cost, output_tokens=cost, status=499, error_type="client_disconnected",
               partial=True)


async def new_key(store, username="u"):
    return await store.create_key(username, "sk-cl-" + username[:8].ljust(8, "x"), "hash", "k", None, True, (),
                                  None)


async def funded(store, amount: int):
    """User "u" with a key and ``amount`` credited: (key, account)."""
    await store.create_user("u")
    key = await new_key(store)
    await store.credit("u", amount, "credit")
    return key, await store.get_account("u")


def sqlite_ledger_at(path: str, migrations: int) -> sqlite_utils.Database:
    """A SQLite ledger as the first ``migrations`` recorded migrations left it (open, for
    the test to fill with rows of that time; close its ``conn`` when done)."""
    db = sqlite_utils.Database(sqlite3.connect(path, isolation_level=None))
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for name, step in MIGRATIONS[:migrations]:
        step(db)
        db.execute("INSERT INTO _migrations VALUES (?, 'then')", (name,))
    return db
