"""The async SQLite Store (storage/sql/store.py's operations): each write runs through
the one writer lane's thread (lane.py, group commit); each read on the read path
(pool.py: read-only connections in worker threads), never in the writer lane; key
lookups on the event loop, on a read-only connection of their own (reader.py)."""

from __future__ import annotations

import time
from functools import partial
from typing import Callable, TypeVar

import trio

from ..leases import Host
from ..location import MEMORY
from ..records import KeyRecord
from ..sql.ledger import Ledger
from ..sql.ops import Ops
from ..sql.store import Op, SqlStore
from .connection import connect, connect_reader
from .integers import not_integers
from .lane import WriterLane
from .pool import ReadPool
from .reader import LoopReader

T = TypeVar("T")


class SqliteStore(SqlStore):
    """``_ledger``: the writer connection's ledger (run in the lane); ``_looked_up``:
    the same on the loop's read-only connection (key lookups only)."""

    _findings = (not_integers,)

    def __init__(self, lane: WriterLane, writer: Ops, reader: LoopReader, looked_up: Ledger,
                 reads: Callable[[], Ops] | None) -> None:
        super().__init__(writer.ledger.instance_id)
        self._lane = lane
        self._writer = writer
        self._ledger = writer.ledger
        self._reads = ReadPool(reads, lane, writer)
        self._reader = reader
        self._looked_up = looked_up

    @classmethod
    async def open(cls, path: str, *, instance_id: str | None = None, busy_timeout: float = 5.0,
                   clock: Callable[[], float] = time.time, create: bool = True,
                   upgrade: bool = True) -> "SqliteStore":
        db, applied = await trio.to_thread.run_sync(partial(connect, path, busy_timeout, create=create,
                                                            upgrade=upgrade))
        try:
            loop_db = None if path == MEMORY else await trio.to_thread.run_sync(connect_reader, path)
        except BaseException:
            await trio.to_thread.run_sync(db.close)
            raise
        here = Host.this()
        writer = Ops.on(db, instance_id, clock, here)
        looked_up = writer.ledger if loop_db is None else Ledger(loop_db, instance_id, clock)

        def reads() -> Ops:
            return Ops.on(connect_reader(path, busy_timeout), instance_id, clock, here)

        store = cls(WriterLane(db, busy_timeout), writer, LoopReader(loop_db), looked_up,
                    None if loop_db is None else reads)
        store.applied_migrations = tuple(applied)
        return store

    async def _write(self, op: Op[T]) -> T:
        return await self._lane.run(op, self._writer)

    async def _read(self, op: Op[T], snapshot: bool = False) -> T:
        return await self._reads.run(op)  # always in a read snapshot: it costs SQLite nothing

    async def find_key(self, prefix: str) -> KeyRecord | None:
        return await self._reader.run(self._looked_up.find_key, prefix, elsewhere=self._reads.run,
                                      read=lambda o: o.ledger.find_key(prefix))

    async def aclose(self) -> None:
        try:
            await trio.to_thread.run_sync(self._reader.close)
            await trio.to_thread.run_sync(self._reads.close)
        finally:
            await self._lane.aclose()
