"""The read path: a small pool of read-only connections, used off the event loop in
worker threads (at most ``size`` at once, a trio CapacityLimiter), as datasette keeps
one write thread apart from a pool of readers. Every read of the store but the key
lookup (reader.py) runs here, in a read snapshot of its own: a report over a large
ledger never takes the write lock, so holds and settles in the writer lane (lane.py)
go on beside it (in WAL mode a reader and the writer do not wait for each other).

Each connection carries its own operations (storage/sql/ops.py, bound to it); a read is a function of them, run in the
thread. An in-memory ledger has no second connection (``:memory:`` is private to its
connection): its reads run in the writer lane, as read snapshots, never in a write
transaction.
"""

from __future__ import annotations

import sqlite3
from typing import Callable, TypeVar

import trio

from ..sql.ops import Ops
from .lane import WriterLane
from .transactions import snapshot, unavailable

T = TypeVar("T")

READERS = 2  # concurrent reads in threads: reports are rare; the machine has few cores


class ReadPool:
    """``connect()`` opens one more read-only connection's operations (in a worker
    thread); ``connect`` None: no such connections, reads go to ``lane`` with
    ``writer_ops``."""

    def __init__(self, connect: Callable[[], Ops] | None, lane: WriterLane, writer_ops: Ops,
                 size: int = READERS) -> None:
        self._connect = connect
        self._lane = lane
        self._writer_ops = writer_ops
        self._limiter = trio.CapacityLimiter(size)
        self._idle: list[Ops] = []
        self._closed = False

    async def run(self, read: Callable[[Ops], T]) -> T:
        if self._connect is None:
            return await self._lane.run(read, self._writer_ops, reads_only=True)
        async with self._limiter:
            held: list[Ops] = [self._idle.pop()] if self._idle else []
            try:
                return await trio.to_thread.run_sync(self._read, held, read)
            finally:
                if held:
                    if self._closed:
                        await trio.to_thread.run_sync(held[0].db.close)
                    else:
                        self._idle.append(held[0])

    def _read(self, held: list[Ops], read: Callable[[Ops], T]) -> T:
        """In the worker thread: open a connection if none was idle, then ``read`` in a
        snapshot of it. sqlite3 faults that mean "cannot serve now" are StoreUnavailable."""
        try:
            if not held:
                held.append(self._connect())
            with snapshot(held[0].db):
                return read(held[0])
        except sqlite3.Error as exc:
            mapped = unavailable(exc)
            if mapped is None:
                raise
            raise mapped from None

    def close(self) -> None:
        """Close the idle connections (in a worker thread); ones in use close when returned."""
        self._closed = True
        while self._idle:
            self._idle.pop().db.close()
