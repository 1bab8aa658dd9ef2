"""The synchronous operations on accounts, keys, balances and holds (every backend:
db.py).

Each runs inside its backend's transaction (SQLite: the writer lane's batch) and opens
a savepoint of its own, so that one operation's failure undoes only that operation."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from typing import Any, Callable

from ..caps import capped_periods, check_periods, spend_day
from ..errors import AlreadyExists, InsufficientBalance, NotFound, StoreError
from ..records import (LIMIT_FIELDS, MAX_RATE, NO_LIMITS, Account, KeyLimits, KeyRecord, LedgerEntry, UsageRow,
                       checked_amount, checked_balance)
from . import changes
from .db import Db, savepoint

USAGE_COLUMNS = tuple(f.name for f in fields(UsageRow))
LEDGER_COLUMNS = ", ".join(f.name for f in fields(LedgerEntry))


class Ledger:
    """``instance_id``: the owner recorded on the holds this store places (None: a
    store that may not place holds). ``clock``: unix time, for leases and progress."""

    def __init__(self, db: Db, instance_id: str | None, clock: Callable[[], float]) -> None:
        self.db = db
        self.instance_id = instance_id
        self.clock = clock

    def now(self) -> float:
        """Now by this store's clock, unix time: every time the store records (records.py)."""
        return self.clock()

    def changed(self, kind: str, name: object) -> None:
        """Inside the changing operation: its notice in the change feed (changes.py)."""
        changes.note(self.db, self.now(), kind, str(name))

    # -- accounts -------------------------------------------------------------------
    def _account_row(self, where: str, arg: Any) -> Account:
        rows = list(self.db.query(f"SELECT id, username, balance, held, created_at FROM accounts WHERE {where}",
                                  (arg,)))
        if not rows:
            raise NotFound(f"user not found: {arg}")
        return Account(**rows[0])

    def create_user(self, username: str) -> Account:
        try:
            with savepoint(self.db):
                self.db.execute("INSERT INTO accounts (username, balance, held, created_at) VALUES (?, 0, 0, ?)",
                                (username, self.now()))
        except self.db.IntegrityError:
            raise AlreadyExists(f"user already exists: {username}") from None
        return self.get_account(username)

    def list_users(self) -> list[Account]:
        return [Account(**r) for r in self.db.query(
            "SELECT id, username, balance, held, created_at FROM accounts ORDER BY username")]

    def get_account(self, username: str) -> Account:
        return self._account_row("username = ?", username)

    def change_balance(self, account_id: int, delta: int, kind: str, ref: str | None,
                       paid: int | None = None, release: int = 0, spend: int | None = None,
                       reason: str | None = None, actor: str | None = None) -> Account:
        """Inside a transaction: move the balance by ``delta`` (and drop ``release`` of held),
        writing the ledger entry when the balance moves. With ``spend``, only if the
        available balance covers it: one conditional statement (InsufficientBalance, and
        nothing changed, when it does not), correct with concurrent writers. AmountOutOfRange
        (raised before the caller's savepoint ends, so nothing stays applied) if the balance
        would leave +-MAX_BALANCE."""
        guard, args = ("", ()) if spend is None else (" AND balance - held >= ?", (spend,))
        row = self.db.execute(
            "UPDATE accounts SET balance = balance + ?, held = held - ? WHERE id = ?" + guard
            + " RETURNING id, username, balance, held, created_at", (delta, release, account_id, *args)).fetchone()
        if row is None:
            account = self._account_row("id = ?", account_id)  # NotFound if there is none
            raise InsufficientBalance(account.available, spend)
        account = Account(*row)
        if delta:
            checked_balance(account.balance, account.username)
            self.db.execute(
                "INSERT INTO ledger (account_id, delta, balance_after, kind, ref, paid, created_at, reason, actor) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (account_id, delta, account.balance, kind, ref, paid, self.now(), reason, actor))
            if paid and self.db.execute(  # the account's first payment ends its free tier (KeyRecord.free_tier)
                    "UPDATE accounts SET paid_at = ? WHERE id = ? AND paid_at IS NULL",
                    (self.now(), account_id)).rowcount:
                self.changed("account", account_id)
        return account

    def credit(self, username: str, amount: int, kind: str, paid: int | None, ref: str | None,
               reason: str | None = None, actor: str | None = None) -> Account:
        checked_amount(amount, "credit")
        if paid is not None:
            checked_amount(paid, "paid", allow_zero=True)
        with savepoint(self.db):
            account = self.get_account(username)
            return self.change_balance(account.id, amount, kind, ref, paid, reason=reason, actor=actor)

    def debit(self, username: str, amount: int, kind: str, reason: str | None, actor: str | None) -> Account:
        """Take ``amount`` off the balance in one conditional write: nothing when the
        available balance (balance less open holds) cannot cover it."""
        checked_amount(amount, "debit")
        with savepoint(self.db):
            account = self.get_account(username)
            return self.change_balance(account.id, -amount, kind, None, spend=amount, reason=reason, actor=actor)

    def transfer(self, from_account_id: int, to_username: str, amount: int, ref: str,
                 key_id: int | None = None) -> tuple[Account, Account]:
        """The debit is conditional on the sender's available balance; the two accounts
        change in the order of their ids, so two opposite transfers on a backend with row
        locks wait for each other instead of deadlocking. Made by API key ``key_id``: that
        key's spend caps bound it and count it."""
        checked_amount(amount, "transfer amount")
        with savepoint(self.db):
            sender = self._account_row("id = ?", from_account_id)
            receiver = self.get_account(to_username)
            if receiver.id == sender.id:
                raise StoreError("Cannot transfer to yourself")
            def debit() -> Account:
                out = self.change_balance(sender.id, -amount, "transfer_out", f"{ref}:{receiver.username}",
                                          spend=amount)
                if key_id is not None:
                    self._spend_by_key(key_id, sender.id, amount)
                return out
            credit = lambda: self.change_balance(receiver.id, amount, "transfer_in", f"{ref}:{sender.username}")
            if sender.id < receiver.id:
                return debit(), credit()
            received = credit()
            return debit(), received

    def _spend_by_key(self, key_id: int, account_id: int, amount: int) -> None:
        """``amount`` just transferred out of ``account_id`` by key ``key_id``: bounded by
        the key's spend caps (SpendCapReached, raised inside the caller's savepoint) and
        counted in them from now on; its ledger entry names the key."""
        caps = self.db.execute("SELECT daily_usd, monthly_usd FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        if caps is not None and (caps[0] or caps[1]):
            self._check_caps(key_id, KeyLimits(daily_usd=caps[0], monthly_usd=caps[1]), amount, held_already=False)
        created_at = self.db.execute(
            "UPDATE ledger SET key_id = ? WHERE id = (SELECT MAX(id) FROM ledger WHERE account_id = ?) "
            "RETURNING created_at", (key_id, account_id)).fetchone()[0]
        self.db.execute("INSERT INTO key_spend (key_id, day, spent) VALUES (?, ?, ?) "
                        "ON CONFLICT (key_id, day) DO UPDATE SET spent = key_spend.spent + excluded.spent",
                        (key_id, spend_day(created_at), amount))

    # -- keys -------------------------------------------------------------------------
    _KEY_SELECT = ("SELECT k.id, k.account_id, a.username, k.prefix, k.key_hash, k.name, k.models, "
                   "k.allow_stream, k.ips, k.pass_thinking, k.created_at, k.last_used_at, k.revoked_at, "
                   "k.expires_at, a.disabled_at IS NOT NULL AS account_disabled, a.paid_at IS NULL AS free_tier, "
                   + ", ".join(f"k.{c}" for c in LIMIT_FIELDS) + " FROM api_keys k JOIN accounts a ON a.id = k.account_id ")

    @staticmethod
    def _key(row: dict) -> KeyRecord:
        row = dict(row)
        row["models"] = tuple(json.loads(row["models"])) if row["models"] is not None else None
        row["ips"] = tuple(json.loads(row["ips"] or "[]"))
        row["allow_stream"] = bool(row["allow_stream"])
        row["pass_thinking"] = None if row["pass_thinking"] is None else bool(row["pass_thinking"])
        row["account_disabled"], row["free_tier"] = bool(row["account_disabled"]), bool(row["free_tier"])
        limits = {c: row.pop(c) for c in LIMIT_FIELDS}
        return KeyRecord(**row, limits=KeyLimits(**limits) if any(limits.values()) else NO_LIMITS)

    def create_key(self, username: str, prefix: str, key_hash: str, name: str,
                   models: tuple[str, ...] | None, allow_stream: bool, ips: tuple[str, ...],
                   pass_thinking: bool | None, limits: KeyLimits = NO_LIMITS) -> KeyRecord:
        values = _checked_limits({c: getattr(limits, c) for c in LIMIT_FIELDS})
        with savepoint(self.db):
            account = self.get_account(username)
            try:
                self.db.execute(
                    "INSERT INTO api_keys (account_id, prefix, key_hash, name, models, allow_stream, ips, "
                    f"pass_thinking, created_at, {', '.join(values)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?"
                    f"{', ?' * len(values)})",
                    (account.id, prefix, key_hash, name, None if models is None else json.dumps(list(models)),
                     int(allow_stream), json.dumps(list(ips)),
                     None if pass_thinking is None else int(pass_thinking), self.now(), *values.values()))
            except self.db.IntegrityError:
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
        with savepoint(self.db):
            cursor = self.db.execute("UPDATE api_keys SET revoked_at = ? WHERE prefix = ? AND revoked_at IS NULL",
                                     (self.now(), prefix))
            if cursor.rowcount == 0 and self.find_key(prefix) is None:
                raise NotFound(f"no key with prefix {prefix}")
            if cursor.rowcount:
                self.changed("key", prefix)
        found = self.find_key(prefix)
        assert found is not None
        return found

    def set_key_limits(self, prefix: str, changes: dict[str, int | None]) -> KeyRecord:
        values = _checked_limits(changes)
        if values:
            with savepoint(self.db):
                cursor = self.db.execute(f"UPDATE api_keys SET {', '.join(f'{c} = ?' for c in values)} "
                                         "WHERE prefix = ?", (*values.values(), prefix))
                if cursor.rowcount == 0:
                    raise NotFound(f"no key with prefix {prefix}")
                self.changed("key", prefix)
        found = self.find_key(prefix)
        if found is None:
            raise NotFound(f"no key with prefix {prefix}")
        return found

    # -- holds ------------------------------------------------------------------------
    # A hold is one conditional statement on its account's row (held grows only if the
    # available balance covers it), so it is correct with concurrent writers, whatever
    # the backend's isolation. A capped key's spend is then checked under that row's
    # lock (every hold, growth and settle of the key's account takes it), in a statement
    # that starts after the lock was had, so it sees every hold and charge committed
    # before: exceeding the cap undoes the hold (the caller's savepoint).
    _CAPS = ("(SELECT k.daily_usd FROM api_keys k WHERE k.id = ? AND k.account_id = accounts.id), "
             "(SELECT k.monthly_usd FROM api_keys k WHERE k.id = ? AND k.account_id = accounts.id)")

    def place_hold(self, account_id: int, amount: int, request_id: str, key_id: int | None = None) -> int:
        checked_amount(amount, "hold")
        if self.instance_id is None:
            raise StoreError("this store was opened without an instance id: it may not place holds")
        with savepoint(self.db):
            caps = self.db.execute(f"UPDATE accounts SET held = held + ? WHERE id = ? AND balance - held >= ? "
                                   f"RETURNING {self._CAPS}", (amount, account_id, amount, key_id, key_id)).fetchone()
            if caps is None:
                available = self._account_row("id = ?", account_id).available  # NotFound if there is none
                raise InsufficientBalance(available, amount)
            hold_id = self.db.execute(
                "INSERT INTO holds (account_id, key_id, amount, request_id, state, owner, created_at) "
                "VALUES (?, ?, ?, ?, 'open', ?, ?) RETURNING id",
                (account_id, key_id, amount, request_id, self.instance_id, self.now())).fetchone()[0]
            if caps[0] or caps[1]:
                self._check_caps(key_id, KeyLimits(daily_usd=caps[0], monthly_usd=caps[1]), amount)
            return hold_id

    def _check_caps(self, key_id: int, caps: KeyLimits, needed: int, held_already: bool = True) -> None:
        """SpendCapReached when the key's spend in the current day or month (its charges
        settled in it + its open holds, ``needed`` of them just placed or grown, unless
        ``held_already`` is False: a transfer) passes a cap. Run under the lock of the key's
        account (see above)."""
        periods = capped_periods(caps, self.clock())
        spent = self.db.execute(
            "SELECT COALESCE(SUM(spent), 0), COALESCE(SUM(CASE WHEN day >= ? THEN spent ELSE 0 END), 0) "
            "FROM key_spend WHERE key_id = ? AND day >= ?", (periods[-1].start, key_id, periods[0].start)).fetchone()
        held = self.db.execute("SELECT COALESCE(SUM(amount), 0) FROM holds WHERE key_id = ? AND state = 'open'",
                               (key_id,)).fetchone()[0]
        by_name = {periods[0].name: spent[0], periods[-1].name: spent[1]}
        check_periods(periods, by_name, held - needed if held_already else held, needed)

    def extend_hold(self, hold_id: int, extra: int) -> None:
        """Grow an open hold by ``extra`` when the available balance and its key's caps
        cover it: the hold's row first, then its account's (the order settle takes them)."""
        checked_amount(extra, "hold")
        with savepoint(self.db):
            grown = self.db.execute("UPDATE holds SET amount = amount + ? WHERE id = ? AND state = 'open' "
                                    "RETURNING account_id, key_id", (extra, hold_id)).fetchone()
            if grown is None:
                raise NotFound(f"no open hold {hold_id}")
            account_id, key_id = grown
            caps = self.db.execute(f"UPDATE accounts SET held = held + ? WHERE id = ? AND balance - held >= ? "
                                   f"RETURNING {self._CAPS}", (extra, account_id, extra, key_id, key_id)).fetchone()
            if caps is None:
                raise InsufficientBalance(self._account_row("id = ?", account_id).available, extra)
            if caps[0] or caps[1]:
                self._check_caps(key_id, KeyLimits(daily_usd=caps[0], monthly_usd=caps[1]), extra)

    def close_hold(self, hold_id: int, state: str, charged: int | None = None) -> tuple[int, int] | None:
        """Close an open hold: (account_id, amount), or None if it is not open (any
        more). Conditional on state = 'open', so two closers never both win. ``charged``:
        recorded in the same statement (what a settlement charged)."""
        if charged is not None:
            return self.db.execute("UPDATE holds SET state = ?, charged = ? WHERE id = ? AND state = 'open' "
                                   "RETURNING account_id, amount", (state, charged, hold_id)).fetchone()
        return self.db.execute("UPDATE holds SET state = ? WHERE id = ? AND state = 'open' "
                               "RETURNING account_id, amount", (state, hold_id)).fetchone()

    def write_usage(self, account_id: int, row: UsageRow) -> None:
        values = [getattr(row, c) for c in USAGE_COLUMNS]
        created_at = values[USAGE_COLUMNS.index("created_at")] = row.created_at or self.now()
        self.db.execute(
            f"INSERT INTO usage (account_id, {', '.join(USAGE_COLUMNS)}) VALUES (?{', ?' * len(values)})",
            (account_id, *values))
        if row.cost:  # the key's spend that day, which its caps read
            self.db.execute("INSERT INTO key_spend (key_id, day, spent) VALUES (?, ?, ?) "
                            "ON CONFLICT (key_id, day) DO UPDATE SET spent = key_spend.spent + excluded.spent",
                            (row.key_id, spend_day(created_at), row.cost))
        self.db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (self.now(), row.key_id))

    def settle(self, hold_id: int, row: UsageRow) -> Account:
        checked_amount(row.cost, "charge", allow_zero=True)
        with savepoint(self.db):
            closed = self.close_hold(hold_id, "settled", charged=row.cost)
            if closed is None:
                return self._settled_before(hold_id, row.request_id, "settled")
            account_id, amount = closed
            within = self._within_balance(hold_id, account_id, amount, row)
            if within is not row:  # cut to what the balance allowed: the hold records that
                row = within
                self.db.execute("UPDATE holds SET charged = ? WHERE id = ?", (row.cost, hold_id))
            account = self.change_balance(account_id, -row.cost, "charge", row.request_id, release=amount)
            self.write_usage(account_id, row)
        return account

    def _within_balance(self, hold_id: int, account_id: int, amount: int, row: UsageRow) -> UsageRow:
        """``row`` charging at most its hold, which grows first (its record) by what the
        account has beyond its holds: no charge passes its hold, and none takes a balance
        (or an available balance) below zero. What it could not charge is recorded in the
        row (``uncharged``). The hold covers the request's worst case, so this cuts only a
        charge its hold did not foresee."""
        if row.cost <= amount:
            return row
        balance, held = self.db.execute("SELECT balance, held FROM accounts WHERE id = ?", (account_id,)).fetchone()
        grown = amount + min(row.cost - amount, max(balance - held, 0))
        self.db.execute("UPDATE holds SET amount = ? WHERE id = ?", (grown, hold_id))
        if row.cost <= grown:
            return row
        return replace(row, cost=grown, uncharged=row.uncharged + row.cost - grown,
                       server_tool_cost=min(row.server_tool_cost, grown))

    def _settled_before(self, hold_id: int, request_id: str, state: str) -> Account:
        """A replayed close of a hold this store already closed the same way for the same
        request: the account, nothing moved again. NotFound for any other hold (not open
        and not closed so, or recovered by another instance)."""
        found = self.db.execute("SELECT account_id FROM holds WHERE id = ? AND state = ? AND request_id = ?",
                                (hold_id, state, request_id)).fetchone()
        if found is None:
            raise NotFound(f"no open hold {hold_id}")
        return self._account_row("id = ?", found[0])

    def release(self, hold_id: int, row: UsageRow | None) -> Account:
        if row is not None and row.cost != 0:
            raise StoreError("a released hold charges nothing: settle it to charge")
        with savepoint(self.db):
            closed = self.close_hold(hold_id, "released")
            if closed is None:
                if row is None:
                    raise NotFound(f"no open hold {hold_id}")
                return self._settled_before(hold_id, row.request_id, "released")
            account_id, amount = closed
            account = self.change_balance(account_id, 0, "release", None, release=amount)
            if row is not None:
                self.write_usage(account_id, row)
        return account

    # -- reports ----------------------------------------------------------------------
    def usage(self, username: str, limit: int) -> list[UsageRow]:
        account = self.get_account(username)
        rows = self.db.query(f"SELECT {', '.join(USAGE_COLUMNS)} FROM usage WHERE account_id = ? "
                             "ORDER BY created_at DESC, request_id DESC LIMIT ?", (account.id, limit))
        return [UsageRow(**{**r, "stream": bool(r["stream"]), "partial": bool(r["partial"])}) for r in rows]

    def ledger(self, username: str) -> list[LedgerEntry]:
        account = self.get_account(username)
        return [LedgerEntry(**r) for r in self.db.query(
            f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE account_id = ? ORDER BY id", (account.id,))]


def _checked_limits(changes: dict[str, int | None]) -> dict[str, int | None]:
    """Limit columns and their values, each None or a positive int in range (spend caps:
    a valid amount); StoreError naming the first that is not."""
    for name, value in changes.items():
        if name not in LIMIT_FIELDS:
            raise StoreError(f"no such key limit: {name}")
        if value is None:
            continue
        if name.endswith("_usd"):
            checked_amount(value, name)
        elif not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_RATE:
            raise StoreError(f"{name} must be a positive integer up to {MAX_RATE}, not {value!r}")
    return dict(changes)
