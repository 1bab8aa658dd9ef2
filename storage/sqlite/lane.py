"""The writer lane: every operation on the one connection goes through it, and
everything queued while a batch runs goes together as the next batch, in one
transaction (group commit). An idle lane runs an operation inline on the event loop
instead, when that cannot wait for a lock."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, TypeVar

import sqlite_utils
import trio

from .transactions import Busy, immediate, snapshot, unavailable

T = TypeVar("T")

QUIET = 0.002  # seconds without a batchable operation after which the lane counts as quiet


@dataclass
class _Op:
    fn: Callable[..., Any]
    args: tuple
    reads_only: bool = False  # runs in a read snapshot of its own, not in the batch's write transaction
    result: Any = None
    error: BaseException | None = None
    done: bool = False


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
    own. ``wait``: how long to wait for another connection's write lock (0: raise Busy
    at once, so that the caller can give way). Failures that make the store
    unavailable fail every op of their transaction with StoreUnavailable."""
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
        error = exc if isinstance(exc, Busy) and wait == 0 else (unavailable(exc) or exc)
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
        self._last_batched = -QUIET  # when the last operation that could be batched came

    async def run(self, fn: Callable[..., T], *args: Any, inline: bool = False, when_quiet: bool = False,
                  reads_only: bool = False) -> T:
        op = _Op(fn, args, reads_only)
        if when_quiet:
            # A quiet lane (no batchable operation for QUIET seconds) has nothing to batch
            # with: a commit of its own right here costs less than the thread round trip,
            # and the worker thread's Python code would contend for the GIL with the
            # requests being served meanwhile.
            now = trio.current_time()
            inline, self._last_batched = now - self._last_batched >= QUIET, now
        if inline and not self._busy and not self._queue:
            # For the operations on a request's critical path (key lookup, hold), and the
            # settle/release of a quiet lane, when the lane is idle: run right here. A
            # small transaction costs tens of microseconds, a round trip to the worker
            # thread several hundred. Under load settles are batched, which costs less per
            # operation than a commit each (settling every tiny request inline measured
            # 780-850 against 1,000-1,060 requests/s at 32 concurrent). If another
            # connection holds the write lock, give way to the thread lane (wait=0: the
            # event loop never waits for a lock).
            run_batch(self.db, [op], wait=0)
            if not isinstance(op.error, Busy):
                return _outcome(op)
            op.error = None
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
                    await trio.to_thread.run_sync(run_batch, self.db, batch, self.busy_timeout)
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
