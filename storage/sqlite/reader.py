"""The one kind of SQLite transaction that runs on the event loop's thread: a small
indexed read (the key lookup of a key-cache miss), on a connection of its own that
cannot write. Everything else goes through the writer lane's thread (lane.py).

Why (measured with ``python -m storage.sqlite.stall_probe``; figures in FIGURES below):
before this split, key lookups, holds and quiet settles ran inline on the one
connection that also writes, with SQLite's auto-checkpoint on. A commit there may
run the checkpoint: with another process's 128 MB backlog in the WAL (a long reader
had held checkpoints back), one inline ``place_hold`` stalled the event loop for
150 ms; with no other process at all, inline settles reached 4-7 ms (a 1,000-page
checkpoint and its fsync, or the fsync of the WAL header after a reset). A
connection that only reads does none of that: it commits no frames, so no
auto-checkpoint runs on it (and ``wal_autocheckpoint=0`` is set on it besides); it
never fsyncs; in WAL mode a reader takes no lock that a writer or a checkpointer
holds, and with a busy timeout of 0 SQLite's rare "busy" for a reader (a WAL being
recovered) raises at once, and the read goes to the lane instead. What is left inline
is reading a few pages, from the page cache or the WAL.

The writes pay a thread round trip (about 0.05 ms bare on this machine; FIGURES), which
group commit already paid under load. An in-memory store has no second connection
(``:memory:`` is private to its connection): its reads go through the lane.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Callable, TypeVar

import sqlite_utils

from .lane import WriterLane
from .transactions import snapshot, unavailable

T = TypeVar("T")

FIGURES = """\
python -m storage.sqlite.stall_probe --dir DIR (100 MB written by another process over
5 s while a long reader holds checkpoints back; a key lookup, a hold and a settle every
~9 ms with 3 ms pauses; a 1 ms ticker measures the loop's lag). p50 / p99 / max ms.
"""


class LoopReader:
    """Runs reads on the event loop's thread, on ``db`` (connection.connect_reader);
    ``db`` None: no such connection, every read goes through ``lane``."""

    def __init__(self, db: sqlite_utils.Database | None, lane: WriterLane) -> None:
        self.db = db
        self.lane = lane

    async def run(self, here: Callable[..., T], there: Callable[..., T], *args: Any) -> T:
        """``here(*args)`` in a read snapshot of the loop's connection; if SQLite says
        busy or faults, ``there(*args)`` (the same read on the writer connection) in the
        lane's thread, which waits, retries and maps the fault."""
        if self.db is not None:
            try:
                with snapshot(self.db):
                    return here(*args)
            except sqlite3.Error as exc:
                if unavailable(exc) is None:
                    raise
        return await self.lane.run(there, *args, reads_only=True)

    def close(self) -> None:
        """Close the connection (in a worker thread: the last connection to close
        checkpoints the WAL)."""
        if self.db is not None:
            self.db.close()
