"""Copying a ledger between stores (``cheaplm db copy --from URL --to URL``): every table
that holds the ledger's state, in an order its references allow, in pages by key, into
an empty ledger of the same schema; then the proof: every account's balance, held and
ledger sum, and every table's row count, equal on both sides, and the copy's own
``db check`` clean. Nothing is reported copied unless all of that holds.

Not copied: the instances (leases of processes on the source) and their channel
snapshots; holds open in the source are copied with their owners, so the first gateway
on the destination recovers them as orphaned (their owners are not running there).
The source should not be written meanwhile (stop its gateways): a write that lands
mid-copy shows up as a mismatch, and the copy is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import StoreError
from .store import SqlStore

# (table, its key columns): referenced tables before those that reference them.
TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("accounts", ("id",)), ("api_keys", ("id",)), ("ledger", ("id",)), ("holds", ("id",)),
    ("usage", ("request_id",)), ("key_spend", ("key_id", "day")), ("sessions", ("id",)), ("codes", ("id",)),
    ("payments", ("provider", "event_id")), ("channel_overrides", ("name",)),
)
PAGE = 5000

_ACCOUNTS = ("SELECT a.username, a.balance, a.held, COALESCE(SUM(l.delta), 0), COUNT(l.id) FROM accounts a "
             "LEFT JOIN ledger l ON l.account_id = a.id GROUP BY a.id, a.username, a.balance, a.held "
             "ORDER BY a.username")


class CopyRefused(StoreError):
    """The copy cannot start (a destination that is not empty) or did not come out equal."""


@dataclass(frozen=True)
class Copied:
    rows: dict[str, int]  # table -> rows copied
    accounts: int


async def copy_ledger(source: SqlStore, target: SqlStore) -> Copied:
    """Copy ``source`` into the empty ``target`` and verify it (CopyRefused otherwise)."""
    if any(await _counts(target, [table for table, _ in TABLES])):
        raise CopyRefused("the destination ledger is not empty: copy into a new one")
    rows: dict[str, int] = {}
    for table, key in TABLES:
        columns = await source._read(lambda o, t=table: _columns(o.db, t))
        rows[table] = await _copy_table(source, target, table, key, columns)
    await target._after_copy([table for table, key in TABLES if key == ("id",)])
    await _verify(source, target, rows)
    return Copied(rows, rows["accounts"])


def _columns(db: Any, table: str) -> tuple[str, ...]:
    return tuple(column[0] for column in db.execute(f"SELECT * FROM {table} LIMIT 0").description)


async def _copy_table(source: SqlStore, target: SqlStore, table: str, key: tuple[str, ...],
                      columns: Sequence[str]) -> int:
    listed = ", ".join(columns)
    order = ", ".join(key)
    insert = f"INSERT INTO {table} ({listed}) VALUES ({', '.join('?' * len(columns))})"
    at = [columns.index(k) for k in key]
    after: tuple | None = None
    copied = 0
    while True:
        where, args = ("", ()) if after is None else (
            f"WHERE ({order}) > ({', '.join('?' * len(key))}) ", after)
        page = await source._read(lambda o, w=where, a=args: [tuple(r) for r in o.db.execute(
            f"SELECT {listed} FROM {table} {w}ORDER BY {order} LIMIT ?", (*a, PAGE)).fetchall()])
        if not page:
            return copied
        await target._write(lambda o, p=page: o.db.executemany(insert, p))
        copied += len(page)
        after = tuple(page[-1][i] for i in at)


async def _counts(store: SqlStore, tables: Sequence[str]) -> list[int]:
    return await store._read(lambda o: [o.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables])


async def _verify(source: SqlStore, target: SqlStore, rows: dict[str, int]) -> None:
    tables = list(rows)
    mine, theirs = await _counts(source, tables), await _counts(target, tables)
    problems = [f"{t}: {a} rows in the source, {b} in the copy ({rows[t]} copied)"
                for t, a, b in zip(tables, mine, theirs) if not a == b == rows[t]]
    before = await source._read(lambda o: [tuple(r) for r in o.db.execute(_ACCOUNTS).fetchall()])
    after = await target._read(lambda o: [tuple(r) for r in o.db.execute(_ACCOUNTS).fetchall()])
    if before != after:
        theirs_by_name = {r[0]: r for r in after}
        for r in before:
            other = theirs_by_name.get(r[0])
            if other != r:
                problems.append(f"account {r[0]}: balance {r[1]}, held {r[2]}, ledger sum {r[3]} in the source; "
                                + ("missing in the copy" if other is None else
                                   f"balance {other[1]}, held {other[2]}, ledger sum {other[3]} in the copy"))
        problems += [f"account {name}: in the copy only" for name in theirs_by_name.keys() - {r[0] for r in before}]
    problems += [f"the copy's db check: {p}" for p in await target.check()]
    if problems:
        raise CopyRefused(f"the copy does not match its source ({len(problems)} problem(s)): "
                          + "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""))
