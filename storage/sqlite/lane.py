"""The writer lane: every write on the store's writer connection goes through it, in
the worker thread, and everything queued while a batch runs goes together as the next
batch, in one transaction (group commit). Reads do not come here (pool.py), but for an
in-memory ledger's and the lane's own final flush, which run as read snapshots.

Nothing here runs on the event loop's thread: a commit may fsync, and on this
connection SQLite's auto-checkpoint runs (copying the whole WAL, which another
process's writes may have grown to hundreds of megabytes, then fsyncing the database),
so an inline commit could stall every stream. reader.py has the measurement.
"""

from __future__ import annotations

import sqlite3
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, ContextManager, TypeVar

import sqlite_utils
import trio

from .transactions import immediate, snapshot, unavailable

T = TypeVar("T")


@dataclass
class _Op:
    fn: Callable[..., Any]
    args: tuple
    reads_only: bool = False  # runs in a read snapshot of its own, not in the batch's write transaction
    result: Any = None
    error: BaseException | None = None
    done: bool = False


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread of trio's cache, the calling task waiting for it,
    uncancellably (as ``trio.to_thread.run_sync`` without ``abandon_on_cancel``). Its hop
    without what the lane does not need: the capacity limiter (whose checkpoint is a
    scheduler pass of its own), a copy of the context, the plumbing for ``trio.from_thread``.
    That halves a hop's CPU (about 30 of 60 us here), and a request takes two."""
    task = trio.lowlevel.current_task()
    token = trio.lowlevel.current_trio_token()

    def deliver(result) -> None:  # (in the worker thread: the outcome, handed to the loop)
        with suppress(trio.RunFinishedError):
            token.run_sync_soon(trio.lowlevel.reschedule, task, result)

    trio.lowlevel.start_thread_soon(partial(fn, *args), deliver, "cheaplm ledger lane")
    return await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)


def _run_ops(ops: list[_Op]) -> None:
    for op in ops:
        try:
            op.result = op.fn(*op.args)
        except sqlite3.Error as exc:
            if unavailable(exc) is not None:
                raise  # the transaction as a whole is in doubt: undo the batch
            op.error = exc
        except Exception as exc:  # the op's own failure (a refused hold), handed to its caller
            op.error = exc


def run_batch(db: sqlite_utils.Database, ops: list[_Op], wait: float) -> None:
    """The writes of the batch in one transaction, each op in its own savepoint, so one
    op's failure leaves the others standing; each read-only op in a snapshot of its
    own. ``wait``: how long to wait for another connection's write lock. Failures that
    make the store unavailable fail every op of their transaction with StoreUnavailable."""
    writes = [op for op in ops if not op.reads_only]
    if writes:
        _in_transaction(immediate(db, wait), writes, wait)
    for op in ops:
        if op.reads_only:
            _in_transaction(snapshot(db), [op], wait)


def _in_transaction(transaction: ContextManager, ops: list[_Op], wait: float) -> None:
    try:
        with transaction:
            _run_ops(ops)
    except Exception as exc:  # the transaction failed as a whole: nothing in it happened
        error = unavailable(exc) or exc
        for op in ops:
            op.result, op.error = None, error


class WriterLane:
    """No background task: the first waiting caller runs the batch and hands the lane on."""

    def __init__(self, db: sqlite_utils.Database, busy_timeout: float) -> None:
        self.db = db
        self.busy_timeout = busy_timeout
        self._queue: list[_Op] = []
        self._busy = False
        self._batch_done = trio.Event()

    async def run(self, fn: Callable[..., T], *args: Any, reads_only: bool = False) -> T:
        op = _Op(fn, args, reads_only)
        self._queue.append(op)
        # Once queued, an operation completes even if its caller is cancelled meanwhile
        # (a hold placed for a caller that then vanished would be money held forever).
        with trio.CancelScope(shield=True):
            while not op.done:
                if self._busy:
                    await self._batch_done.wait()
                    continue
                self._busy = True
                batch, self._queue = self._queue, []
                try:
                    await in_thread(run_batch, self.db, batch, self.busy_timeout)
                finally:
                    for item in batch:
                        item.done = True
                    self._busy = False
                    self._batch_done.set()
                    self._batch_done = trio.Event()
        return _outcome(op)

    async def aclose(self) -> None:
        """Close once every queued operation has run (never inside a batch). The flush
        reads only, so that a locked database cannot keep the connection open."""
        with trio.CancelScope(shield=True):
            try:
                while self._busy or self._queue:
                    if not self._busy:
                        await self.run(self.db.execute, "SELECT 1", reads_only=True)
                    else:
                        await self._batch_done.wait()
            finally:
                await trio.to_thread.run_sync(self.db.close)


def _outcome(op: _Op) -> Any:
    if op.error is not None:
        raise op.error
    return op.result
