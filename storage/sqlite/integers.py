"""SQLite's own ``db check`` finding: a column's declared type does not bind what it
stores, so money could be stored as a float (PostgreSQL's bigint columns cannot)."""

from __future__ import annotations

import sqlite3
from typing import Iterable

_MONEY_COLUMNS = (("accounts", "balance"), ("accounts", "held"), ("ledger", "delta"),
                  ("ledger", "balance_after"), ("holds", "amount"), ("usage", "cost"), ("key_spend", "spent"))


def not_integers(conn: sqlite3.Connection) -> Iterable[str]:
    for table, column in _MONEY_COLUMNS:
        for key, value, kind in conn.execute(
                f"SELECT rowid, {column}, typeof({column}) FROM {table} WHERE typeof({column}) != 'integer'"):
            yield f"{table} row {key}: {column} is stored as {kind} ({value!r}), not an integer"
