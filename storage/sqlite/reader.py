"""The one kind of SQLite transaction that runs on the event loop's thread: a small
indexed read (the key lookup of a key-cache miss), on a connection of its own that
cannot write. Every write goes through the writer lane's thread (lane.py), every other
read through the read path's threads (pool.py).

The decision, measured with ``python -m bench.stall_probe --dir DIR`` (a
quiet gateway: a key lookup, a hold and a settle every ~9 ms; another process writes
100 MB over 5 s while a long reader holds checkpoints back, a 125-130 MB WAL; a 1 ms
ticker measures the loop's lag; figures p50 / p99 / max ms, two runs each, 2026-11-26,
2 cores shared with other test runs):

- before (key lookups, holds and quiet settles inline, on the one connection, which
  also writes and auto-checkpoints): the first inline hold after the reader let go ran
  the whole checkpoint on the loop: ``place_hold`` inline 0.10 / 3.1 / **255.7** and
  0.10 / 4.2 / **176.5**, the loop's lag max **254.9** and **176.7**; with no other
  process at all, inline settles reached 5.1 and 8.2 (checkpoints of 1,000 pages and
  their fsyncs).
- after (this module), four runs: inline lookups p50 0.06-0.11, p99 0.11-0.52, max
  0.13-0.56 in every phase but one (a 3.1 once in 1,000 calls, at a load average of
  2 from other sessions' tests); the checkpoint ran in the lane's thread (a hold or
  settle of 148.8-157.2 there) and the loop's lag had no spike of that kind: max
  1.1-8.1 ms per phase, none over 10 ms, not lined up with the lookups (whose max was
  0.23 in the phase of the 8.1); a ticker alone on this shared machine reached 2.4.

Why a read-only connection cannot stall: it commits no frames, so SQLite's
auto-checkpoint (which runs on the committing connection) never runs on it, and
``wal_autocheckpoint=0`` is set on it besides; it never writes or fsyncs; in WAL mode
a reader waits for no lock a writer or checkpointer holds, and with a busy timeout of
0 SQLite's rare "busy" for a reader (a WAL being recovered after a crash) raises at
once and the read goes to the read path (pool.py). What is left is reading a few pages from the page
cache or the WAL file.

Writes stay off the loop because a write cannot be made safe there: even without
auto-checkpoint, the first commit after a checkpoint that copied the whole WAL (run
by any process) restarts the WAL and fsyncs its header (wal.c: "Sync the header ... Otherwise an out-of-order
write following a WAL restart could result in database corruption"). The price,
measured by the same probe on an idle store, p50: a hold 0.07-0.09 -> 0.17-0.29 ms, a
settle 0.14-0.15 -> 0.24-0.38 ms; a bare thread round trip costs 0.043 ms back to back
and 0.08 after a 3 ms pause (the worker thread and then the loop are woken from
sleep); a key lookup would pay it too (0.017 ms on the loop, 0.076 through the lane).
In the bench (``python -m bench --scenario nonstream --concurrency 1,32 --duration 4``
and ``--scenario stream --concurrency 1 --duration 8``, three interleaved runs each):
non-streaming at 1 client 816 / 797 / 514 -> 688 / 777 / 736 req/s, 0.96-1.03 ->
1.06-1.10 ms CPU per request; at 32 clients no change (1,414 / 1,462 / 1,422 -> 1,497 /
1,446 / 1,334: batched anyway); added TTFT p50 at 1 stream 1.33 / 1.54 / 1.38 -> 1.55
/ 1.81 / 1.07 ms (8 streams a run: within its noise).

Every other read runs on the read path (pool.py), in worker threads, never in the
writer lane. An in-memory store has no second connection (``:memory:`` is private to
its connection): its reads go through the lane, as read snapshots.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Awaitable, Callable, TypeVar

import sqlite_utils

from .transactions import snapshot, unavailable

T = TypeVar("T")
R = TypeVar("R")


class LoopReader:
    """Runs reads on the event loop's thread, on ``db`` (connection.connect_reader);
    ``db`` None: no such connection, every read goes elsewhere (the read path)."""

    def __init__(self, db: sqlite_utils.Database | None) -> None:
        self.db = db

    async def run(self, here: Callable[..., T], *args: Any, elsewhere: Callable[[R], Awaitable[T]], read: R) -> T:
        """``here(*args)`` in a read snapshot of the loop's connection; if SQLite says
        busy or faults, ``elsewhere(read)`` (the same read on the read path, in a worker
        thread, which waits, retries and maps the fault)."""
        if self.db is not None:
            try:
                with snapshot(self.db):
                    return here(*args)
            except sqlite3.Error as exc:
                if unavailable(exc) is None:
                    raise
        return await elsewhere(read)

    def close(self) -> None:
        """Close the connection (in a worker thread: the last connection to close
        checkpoints the WAL)."""
        if self.db is not None:
            self.db.close()
