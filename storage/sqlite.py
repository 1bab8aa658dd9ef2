"""SQLite Store on sqlite-utils. Every operation runs on one connection through one
lane (a worker thread behind ``trio.CapacityLimiter(1)``), each write in its own
``BEGIN IMMEDIATE`` transaction, so holds and balances can never race.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any, Callable, Sequence, TypeVar

import sqlite_utils
import trio

from .base import (Account, AlreadyExists, InsufficientBalance, KeyRecord, LedgerEntry, NotFound,
                   StoreError, UsageRow)
from .migrations import Busy, immediate, migrate

T = TypeVar("T")

_USAGE_COLUMNS = tuple(f.name for f in fields(UsageRow))
QUIET = 0.002  # seconds without a batchable operation after which the lane counts as quiet


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def connect(path: str) -> sqlite_utils.Database:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0)
    db = sqlite_utils.Database(conn)
    if path != ":memory:":
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA busy_timeout=30000")
    migrate(db)
    # From here on a locked database never blocks a statement: writers wait in
    # begin_immediate (in the worker thread), and an operation run inline on the
    # event loop gives way to the thread instead of waiting.
    db.execute("PRAGMA busy_timeout=0")
    return db


class SqliteLedger:
    """The synchronous operations; SqliteStore runs each one in the writer lane."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    # -- accounts -------------------------------------------------------------------
    def _account_row(self, where: str, arg: Any) -> Account:
        rows = list(self.db.query(f"SELECT id, username, balance, held, created_at FROM accounts WHERE {where}",
                                  (arg,)))
        if not rows:
            raise NotFound(f"user not found: {arg}")
        return Account(**rows[0])

    def create_user(self, username: str) -> Account:
        try:
            with immediate(self.db):
                self.db.execute("INSERT INTO accounts (username, balance, held, created_at) VALUES (?, 0, 0, ?)",
                                (username, now()))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"user already exists: {username}") from None
        return self.get_account(username)

    def list_users(self) -> list[Account]:
        return [Account(**r) for r in self.db.query(
            "SELECT id, username, balance, held, created_at FROM accounts ORDER BY username")]

    def get_account(self, username: str) -> Account:
        return self._account_row("username = ?", username)

    def _change_balance(self, account_id: int, delta: int, kind: str, ref: str | None,
                        paid: int | None = None, release: int = 0) -> Account:
        """Inside a transaction: move the balance by ``delta`` (and drop ``release`` of held),
        writing the ledger entry when the balance moves."""
        row = self.db.execute(
            "UPDATE accounts SET balance = balance + ?, held = held - ? WHERE id = ? "
            "RETURNING id, username, balance, held, created_at", (delta, release, account_id)).fetchone()
        if row is None:
            raise NotFound(f"account {account_id} not found")
        account = Account(*row)
        if delta:
            self.db.execute(
                "INSERT INTO ledger (account_id, delta, balance_after, kind, ref, paid, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (account_id, delta, account.balance, kind, ref, paid, now()))
        return account

    def credit(self, username: str, amount: int, kind: str, paid: int | None, ref: str | None) -> Account:
        with immediate(self.db):
            account = self.get_account(username)
            return self._change_balance(account.id, amount, kind, ref, paid)

    def transfer(self, from_account_id: int, to_username: str, amount: int, ref: str) -> tuple[Account, Account]:
        if amount <= 0:
            raise StoreError("transfer amount must be positive")
        with immediate(self.db):
            sender = self._account_row("id = ?", from_account_id)
            receiver = self.get_account(to_username)
            if receiver.id == sender.id:
                raise StoreError("Cannot transfer to yourself")
            if sender.available < amount:
                raise InsufficientBalance(sender.available, amount)
            sender = self._change_balance(sender.id, -amount, "transfer_out", f"{ref}:{receiver.username}")
            receiver = self._change_balance(receiver.id, amount, "transfer_in", f"{ref}:{sender.username}")
        return sender, receiver

    # -- keys -------------------------------------------------------------------------
    _KEY_SELECT = ("SELECT k.id, k.account_id, a.username, k.prefix, k.key_hash, k.name, k.models, "
                   "k.allow_stream, k.ips, k.pass_thinking, k.created_at, k.last_used_at, k.revoked_at "
                   "FROM api_keys k JOIN accounts a ON a.id = k.account_id ")

    @staticmethod
    def _key(row: dict) -> KeyRecord:
        row = dict(row)
        row["models"] = tuple(json.loads(row["models"])) if row["models"] is not None else None
        row["ips"] = tuple(json.loads(row["ips"] or "[]"))
        row["allow_stream"] = bool(row["allow_stream"])
        row["pass_thinking"] = None if row["pass_thinking"] is None else bool(row["pass_thinking"])
        return KeyRecord(**row)

    def create_key(self, username: str, prefix: str, key_hash: str, name: str,
                   models: tuple[str, ...] | None, allow_stream: bool, ips: tuple[str, ...],
                   pass_thinking: bool | None) -> KeyRecord:
        with immediate(self.db):
            account = self.get_account(username)
            try:
                self.db.execute(
                    "INSERT INTO api_keys (account_id, prefix, key_hash, name, models, allow_stream, ips, "
                    "pass_thinking, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (account.id, prefix, key_hash, name, None if models is None else json.dumps(list(models)),
                     int(allow_stream), json.dumps(list(ips)),
                     None if pass_thinking is None else int(pass_thinking), now()))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"key prefix collision: {prefix}") from None
        found = self.find_key(prefix)
        assert found is not None
        return found

    def list_keys(self, username: str) -> list[KeyRecord]:
        account = self.get_account(username)
        return [self._key(r) for r in self.db.query(self._KEY_SELECT + "WHERE k.account_id = ? ORDER BY k.id",
                                                    (account.id,))]

    def find_key(self, prefix: str) -> KeyRecord | None:
        rows = list(self.db.query(self._KEY_SELECT + "WHERE k.prefix = ?", (prefix,)))
        return self._key(rows[0]) if rows else None

    def revoke_key(self, prefix: str) -> KeyRecord:
        with immediate(self.db):
            cursor = self.db.execute("UPDATE api_keys SET revoked_at = ? WHERE prefix = ? AND revoked_at IS NULL",
                                     (now(), prefix))
            if cursor.rowcount == 0 and self.find_key(prefix) is None:
                raise NotFound(f"no key with prefix {prefix}")
        found = self.find_key(prefix)
        assert found is not None
        return found

    # -- holds ------------------------------------------------------------------------
    def place_hold(self, account_id: int, amount: int, request_id: str) -> int:
        with immediate(self.db):
            row = self.db.execute("SELECT balance, held FROM accounts WHERE id = ?", (account_id,)).fetchone()
            if row is None:
                raise NotFound(f"account {account_id} not found")
            available = row[0] - row[1]
            if available < amount:
                raise InsufficientBalance(available, amount)
            self.db.execute("UPDATE accounts SET held = held + ? WHERE id = ?", (amount, account_id))
            return self.db.execute(
                "INSERT INTO holds (account_id, amount, request_id, state, created_at) VALUES (?, ?, ?, 'open', ?)",
                (account_id, amount, request_id, now())).lastrowid

    def _close_hold(self, hold_id: int, state: str) -> tuple[int, int]:
        row = self.db.execute("UPDATE holds SET state = ? WHERE id = ? AND state = 'open' "
                              "RETURNING account_id, amount", (state, hold_id)).fetchone()
        if row is None:
            raise NotFound(f"no open hold {hold_id}")
        return row[0], row[1]

    def _write_usage(self, account_id: int, row: UsageRow) -> None:
        values = [getattr(row, c) for c in _USAGE_COLUMNS]
        values[_USAGE_COLUMNS.index("created_at")] = row.created_at or now()
        self.db.execute(
            f"INSERT INTO usage (account_id, {', '.join(_USAGE_COLUMNS)}) VALUES (?{', ?' * len(values)})",
            (account_id, *values))
        self.db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now(), row.key_id))

    def settle(self, hold_id: int, row: UsageRow) -> Account:
        with immediate(self.db):
            account_id, amount = self._close_hold(hold_id, "settled")
            account = self._change_balance(account_id, -row.cost, "charge", row.request_id, release=amount)
            self._write_usage(account_id, row)
        return account

    def release(self, hold_id: int, row: UsageRow | None) -> Account:
        with immediate(self.db):
            account_id, amount = self._close_hold(hold_id, "released")
            account = self._change_balance(account_id, 0, "release", None, release=amount)
            if row is not None:
                self._write_usage(account_id, row)
        return account

    def recover_open_holds(self) -> int:
        """After a crash: release every hold left open (its request died with the process)."""
        with immediate(self.db):
            rows = self.db.execute("SELECT id FROM holds WHERE state = 'open'").fetchall()
            for (hold_id,) in rows:
                account_id, amount = self._close_hold(hold_id, "released_on_restart")
                self._change_balance(account_id, 0, "release", None, release=amount)
        return len(rows)

    # -- reports ----------------------------------------------------------------------
    def usage(self, username: str, limit: int) -> list[UsageRow]:
        account = self.get_account(username)
        rows = self.db.query(f"SELECT {', '.join(_USAGE_COLUMNS)} FROM usage WHERE account_id = ? "
                             "ORDER BY created_at DESC, rowid DESC LIMIT ?", (account.id, limit))
        return [UsageRow(**{**r, "stream": bool(r["stream"]), "partial": bool(r["partial"])}) for r in rows]

    def ledger(self, username: str) -> list[LedgerEntry]:
        account = self.get_account(username)
        return [LedgerEntry(**r) for r in self.db.query(
            "SELECT id, account_id, delta, balance_after, kind, ref, paid, created_at FROM ledger "
            "WHERE account_id = ? ORDER BY id", (account.id,))]


@dataclass
class _Op:
    fn: Callable[..., Any]
    args: tuple
    result: Any = None
    error: BaseException | None = None
    done: bool = False


def _run_batch(db: sqlite_utils.Database, ops: list[_Op], wait: float = 30.0) -> None:
    """Every op of the batch in one transaction, each in its own savepoint, so one op's
    failure (a refused hold) leaves the others standing. ``wait``: how long to wait for
    another connection's write lock before giving up with Busy."""
    try:
        with immediate(db, wait):
            for op in ops:
                try:
                    op.result = op.fn(*op.args)
                except Exception as exc:  # the op's own failure, handed to its caller
                    op.error = exc
    except Exception as exc:  # the transaction failed as a whole: nothing in the batch happened
        for op in ops:
            op.result, op.error = None, exc


def _inline_would_wait(op: _Op) -> bool:
    return isinstance(op.error, Busy)


class SqliteStore:
    """The async Store: calls queue their SqliteLedger operation for the one writer
    lane, which runs everything queued as one batch in one transaction (group
    commit): one thread hop and one commit serve every request that arrived while
    the previous batch was running. No background task: the first waiting caller
    runs the batch and hands the lane on."""

    def __init__(self, ledger: SqliteLedger) -> None:
        self._ledger = ledger
        self._queue: list[_Op] = []
        self._busy = False
        self._batch_done = trio.Event()
        self._last_batched = -QUIET  # when the last operation that could be batched came

    @classmethod
    async def open(cls, path: str) -> "SqliteStore":
        db = await trio.to_thread.run_sync(connect, path)
        return cls(SqliteLedger(db))

    async def _run(self, fn: Callable[..., T], *args: Any, inline: bool = False, when_quiet: bool = False) -> T:
        op = _Op(fn, args)
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
            # connection holds the write lock, give way to the thread lane.
            _run_batch(self._ledger.db, [op], wait=0)
            if not _inline_would_wait(op):
                if op.error is not None:
                    raise op.error
                return op.result
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
                    await trio.to_thread.run_sync(_run_batch, self._ledger.db, batch)
                finally:
                    for item in batch:
                        item.done = True
                    self._busy = False
                    self._batch_done.set()
                    self._batch_done = trio.Event()
        if op.error is not None:
            raise op.error
        return op.result

    async def create_user(self, username: str) -> Account:
        return await self._run(self._ledger.create_user, username)

    async def list_users(self) -> Sequence[Account]:
        return await self._run(self._ledger.list_users)

    async def get_account(self, username: str) -> Account:
        return await self._run(self._ledger.get_account, username)

    async def create_key(self, username: str, prefix: str, key_hash: str, name: str,
                         models: tuple[str, ...] | None, allow_stream: bool,
                         ips: tuple[str, ...], pass_thinking: bool | None) -> KeyRecord:
        return await self._run(self._ledger.create_key, username, prefix, key_hash, name, models,
                               allow_stream, ips, pass_thinking)

    async def list_keys(self, username: str) -> Sequence[KeyRecord]:
        return await self._run(self._ledger.list_keys, username)

    async def find_key(self, prefix: str) -> KeyRecord | None:
        return await self._run(self._ledger.find_key, prefix, inline=True)

    async def revoke_key(self, prefix: str) -> KeyRecord:
        return await self._run(self._ledger.revoke_key, prefix)

    async def credit(self, username: str, amount: int, kind: str, paid: int | None = None,
                     ref: str | None = None) -> Account:
        return await self._run(self._ledger.credit, username, amount, kind, paid, ref)

    async def transfer(self, from_account_id: int, to_username: str, amount: int,
                       ref: str) -> tuple[Account, Account]:
        return await self._run(self._ledger.transfer, from_account_id, to_username, amount, ref)

    async def place_hold(self, account_id: int, amount: int, request_id: str) -> int:
        return await self._run(self._ledger.place_hold, account_id, amount, request_id, inline=True)

    async def settle(self, hold_id: int, row: UsageRow) -> Account:
        return await self._run(self._ledger.settle, hold_id, row, when_quiet=True)

    async def release(self, hold_id: int, row: UsageRow | None) -> Account:
        return await self._run(self._ledger.release, hold_id, row, when_quiet=True)

    async def recover_open_holds(self) -> int:
        return await self._run(self._ledger.recover_open_holds)

    async def usage(self, username: str, limit: int = 50) -> Sequence[UsageRow]:
        return await self._run(self._ledger.usage, username, limit)

    async def ledger(self, username: str) -> Sequence[LedgerEntry]:
        return await self._run(self._ledger.ledger, username)

    async def aclose(self) -> None:
        """Close once every queued operation has run (never inside a batch)."""
        with trio.CancelScope(shield=True):
            while self._busy or self._queue:
                if not self._busy:
                    await self._run(self._ledger.db.execute, "SELECT 1")
                else:
                    await self._batch_done.wait()
            await trio.to_thread.run_sync(self._ledger.db.close)
