"""The PostgreSQL Store (storage/sql/store.py's operations) on psycopg 3 and a
psycopg_pool connection pool, driven from trio through worker threads, as the SQLite
lane is: each operation takes a pooled connection in a thread (at most the pool's size
at once, a trio CapacityLimiter): a write in a transaction of its own; a read that needs
one snapshot for several statements (``db check``) in a READ ONLY, REPEATABLE READ one,
any other read statement by statement. psycopg's async API is asyncio's, not trio's.

No group commit here: concurrent transactions on several connections are what
PostgreSQL does well, and a batch of several operations would hold several accounts'
row locks at once, in no fixed order. Correctness under concurrent writers comes from
the operations themselves (conditional UPDATEs; a transfer changes its two accounts in
id order; a hold's growth and close take the hold's row before its account's).
``busy_timeout`` is the ``lock_timeout`` (StoreBusy past it) and how long a call
waits for a pooled connection."""

from __future__ import annotations

import time
from functools import partial
from typing import Callable, Sequence, TypeVar

import psycopg
import trio
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from ..leases import Host
from ..sql.ops import Ops
from ..sql.store import Op, SqlStore
from .connection import PgDb, configure, unavailable
from .migrations import migrate

T = TypeVar("T")

POOL_SIZE = 4  # connections (and worker threads) at once; each operation holds one for one transaction


class PostgresStore(SqlStore):
    def __init__(self, pool: ConnectionPool, instance_id: str | None, clock: Callable[[], float],
                 size: int = POOL_SIZE) -> None:
        super().__init__(instance_id)
        self._pool = pool
        self._clock = clock
        self._here = Host.this()
        self._limiter = trio.CapacityLimiter(size)

    @classmethod
    async def open(cls, url: str, *, shown: str, instance_id: str | None = None, busy_timeout: float = 5.0,
                   clock: Callable[[], float] = time.time, create: bool = True,
                   upgrade: bool = True) -> "PostgresStore":
        pool, applied = await trio.to_thread.run_sync(
            partial(_open_pool, url, shown, busy_timeout, create=create, upgrade=upgrade))
        store = cls(pool, instance_id, clock)
        store.applied_migrations = tuple(applied)
        return store

    async def _write(self, op: Op[T]) -> T:
        # Once started, a write completes and hands back its result even if its caller
        # is cancelled meanwhile (a hold placed for a caller that then vanished would
        # be money held until a restart), as in the SQLite lane.
        with trio.CancelScope(shield=True):
            async with self._limiter:
                return await trio.to_thread.run_sync(self._run, op, False)

    async def _read(self, op: Op[T], snapshot: bool = False) -> T:
        async with self._limiter:
            return await trio.to_thread.run_sync(self._run, op, True, snapshot)

    def _run(self, op: Op[T], read: bool, snapshot: bool = False) -> T:
        """In a worker thread: ``op`` on a pooled connection; a write in a transaction; a
        read in a READ ONLY, REPEATABLE READ one when it needs a snapshot, otherwise its
        statements each on their own (a key lookup: one round trip, not four)."""
        try:
            with self._pool.connection() as conn:
                ops = Ops.on(PgDb(conn), self.instance_id, self._clock, self._here)
                if read and not snapshot:
                    return op(ops)
                with conn.transaction():
                    if read:
                        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    return op(ops)
        except Exception as exc:
            mapped = unavailable(exc)
            if mapped is None:
                raise
            raise mapped from None

    async def _after_copy(self, tables: Sequence[str]) -> None:
        def advance(ops: Ops) -> None:
            for table in tables:
                if ops.db.execute("SELECT pg_get_serial_sequence(?, 'id')", (table,)).fetchone()[0]:
                    ops.db.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                   f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)")
        await self._write(advance)

    async def aclose(self) -> None:
        """Close the pool (a connection still in use by an operation closes when returned)."""
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._pool.close)


def _open_pool(url: str, shown: str, busy_timeout: float, *, create: bool,
               upgrade: bool) -> tuple[ConnectionPool, list[str]]:
    """The migrated database's pool (in a worker thread); StoreUnavailable (one line, no
    password) if the server cannot be reached or refuses."""
    try:
        given = conninfo_to_dict(url).get("options") or ""
        options = {"options": f"{given} -c lock_timeout={max(1, int(busy_timeout * 1000))}".strip(),
                   "connect_timeout": max(1, int(busy_timeout + 0.999))}
        with psycopg.connect(url, autocommit=True, **options) as conn:
            applied = migrate(conn, shown, create=create, upgrade=upgrade)
        pool = ConnectionPool(url, min_size=1, max_size=POOL_SIZE, kwargs=options, configure=configure,
                              timeout=busy_timeout, name="cheaplm", open=False)
        pool.open(wait=True, timeout=max(busy_timeout, 1.0))
    except psycopg.Error as exc:
        mapped = unavailable(exc)
        if mapped is None:
            raise
        reason = str(mapped).removeprefix("the ledger is unavailable: ").removeprefix("the ledger is busy: ")
        raise type(mapped)(f"cannot open the ledger at {shown}: {reason}", mapped.retry_after) from None
    return pool, applied
