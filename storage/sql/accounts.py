"""The synchronous operations on people, sessions, codes and payments, and the report
pages (every backend: db.py). Each runs in its backend's transaction, in a savepoint of
its own, on the ledger's connection (its balance changes go through
``Ledger.change_balance``, so each is a ledger entry)."""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import AlreadyExists, CodeRefused, NotFound, StoreError
from ..records import (ROLES, Account, CodeRecord, KeyRecord, LedgerEntry, Payment, Profile, Session, UsageLine,
                       UsageRow, checked_amount)
from ..caps import SPEND_DAY, day_of, spend_day_start
from .ledger import LEDGER_COLUMNS, USAGE_COLUMNS, Ledger
from .db import savepoint

_PROFILE = ("SELECT a.id AS account_id, a.username, a.email, a.role, a.password_hash, "
            "a.disabled_at IS NOT NULL AS disabled, a.created_at FROM accounts a ")
_CODE = ("SELECT c.id, c.code_hash, c.hint, c.paid, c.credit, c.created_at, c.expires_at, c.redeemed_at, "
         "a.username AS redeemed_by FROM codes c LEFT JOIN accounts a ON a.id = c.redeemed_by ")


def _profile(row: dict) -> Profile:
    return Profile(**{**row, "disabled": bool(row["disabled"])})


class Accounts:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.db = ledger.db

    # -- profiles ---------------------------------------------------------------------
    def _one_profile(self, where: str, arg: Any) -> Profile:
        rows = list(self.db.query(_PROFILE + f"WHERE {where}", (arg,)))
        if not rows:
            raise NotFound(f"user not found: {arg}")
        return _profile(rows[0])

    def create_profile(self, username: str, password_hash: str | None, email: str | None, role: str,
                       credit: int = 0) -> Profile:
        if role not in ROLES:
            raise StoreError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if credit:
            checked_amount(credit, "starting credit")
        with savepoint(self.db):
            try:
                account_id = self.db.execute(
                    "INSERT INTO accounts (username, balance, held, created_at, email, password_hash, role) "
                    "VALUES (?, 0, 0, ?, ?, ?, ?) RETURNING id",
                    (username, self.ledger.now(), email, password_hash, role)).fetchone()[0]
            except self.db.IntegrityError:
                raise AlreadyExists(f"user already exists: {username}") from None
            if credit:
                self.ledger.change_balance(account_id, credit, "signup_credit", None)
        return self.get_profile(username)

    def get_profile(self, username: str) -> Profile:
        return self._one_profile("a.username = ?", username)

    def list_profiles(self) -> list[tuple[Profile, Account]]:
        rows = self.db.query(_PROFILE.replace(" FROM", ", a.balance, a.held FROM") + "ORDER BY a.username")
        out = []
        for row in rows:
            balance, held = row.pop("balance"), row.pop("held")
            profile = _profile(row)
            out.append((profile, Account(profile.account_id, profile.username, balance, held, profile.created_at)))
        return out

    def _end_sessions(self, account_id: int) -> None:
        self.db.execute("DELETE FROM sessions WHERE account_id = ?", (account_id,))

    def set_password(self, username: str, password_hash: str) -> Profile:
        with savepoint(self.db):
            profile = self.get_profile(username)
            self.db.execute("UPDATE accounts SET password_hash = ? WHERE id = ?", (password_hash, profile.account_id))
            self._end_sessions(profile.account_id)
        return self.get_profile(username)

    def set_disabled(self, username: str, disabled: bool) -> Profile:
        with savepoint(self.db):
            profile = self.get_profile(username)
            if disabled:
                self.db.execute("UPDATE accounts SET disabled_at = COALESCE(disabled_at, ?) WHERE id = ?",
                                (self.ledger.now(), profile.account_id))
                self._end_sessions(profile.account_id)
            else:
                self.db.execute("UPDATE accounts SET disabled_at = NULL WHERE id = ?", (profile.account_id,))
            self.ledger.changed("account", profile.account_id)
        return self.get_profile(username)

    def set_key_expiry(self, prefix: str, expires_at: float | None) -> KeyRecord:
        with savepoint(self.db):
            if self.db.execute("UPDATE api_keys SET expires_at = ? WHERE prefix = ?",
                               (expires_at, prefix)).rowcount == 0:
                raise NotFound(f"no key with prefix {prefix}")
            self.ledger.changed("key", prefix)
        found = self.ledger.find_key(prefix)
        assert found is not None
        return found

    # -- sessions ---------------------------------------------------------------------
    def create_session(self, account_id: int, token_hash: str, expires_at: float,
                       keep: int | None = None) -> Session:
        with savepoint(self.db):
            self.db.execute("DELETE FROM sessions WHERE expires_at <= ?", (self.ledger.clock(),))
            self.db.execute("INSERT INTO sessions (token_hash, account_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                            (token_hash, account_id, self.ledger.now(), expires_at))
            if keep is not None:  # the account's newest ``keep`` sessions stay; older ones end
                self.db.execute("DELETE FROM sessions WHERE account_id = ? AND id NOT IN (SELECT id FROM sessions "
                                "WHERE account_id = ? ORDER BY id DESC LIMIT ?)", (account_id, account_id, keep))
        found = self.find_session(token_hash)
        if found is None:
            raise StoreError("the session ended as it was made (the account is disabled, or the expiry is past)")
        return found

    def find_session(self, token_hash: str) -> Session | None:
        rows = list(self.db.query(
            _PROFILE.replace(" FROM", ", s.id AS session_id, s.expires_at FROM")
            + "JOIN sessions s ON s.account_id = a.id WHERE s.token_hash = ? AND s.expires_at > ? "
              "AND a.disabled_at IS NULL", (token_hash, self.ledger.clock())))
        if not rows:
            return None
        row = rows[0]
        session_id, expires_at = row.pop("session_id"), row.pop("expires_at")
        return Session(session_id, _profile(row), expires_at)

    def end_session(self, token_hash: str) -> None:
        with savepoint(self.db):
            self.db.execute("DELETE FROM sessions WHERE token_hash = ? OR expires_at <= ?",
                            (token_hash, self.ledger.clock()))

    # -- codes and payments -----------------------------------------------------------
    def create_codes(self, codes: Sequence[tuple[str, str]], paid: int, credit: int,
                     expires_at: float | None) -> list[CodeRecord]:
        checked_amount(paid, "paid")
        checked_amount(credit, "credit")
        created = self.ledger.now()
        with savepoint(self.db):
            try:
                ids = [self.db.execute("INSERT INTO codes (code_hash, hint, paid, credit, created_at, expires_at) "
                                       "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                                       (code_hash, hint, paid, credit, created, expires_at)).fetchone()[0]
                       for code_hash, hint in codes]
            except self.db.IntegrityError:
                raise AlreadyExists("a code with this hash exists already") from None
        return [self._code("c.id = ?", i) for i in ids]

    def _code(self, where: str, arg: Any) -> CodeRecord:
        rows = list(self.db.query(_CODE + f"WHERE {where}", (arg,)))
        if not rows:
            raise CodeRefused("unknown")
        return CodeRecord(**rows[0])

    def list_codes(self) -> list[CodeRecord]:
        return [CodeRecord(**r) for r in self.db.query(_CODE + "ORDER BY c.id DESC")]

    def redeem_code(self, code_hash: str, username: str) -> tuple[CodeRecord, Account]:
        with savepoint(self.db):
            account = self.ledger.get_account(username)
            code = self._code("c.code_hash = ?", code_hash)
            status = code.status(self.ledger.clock())
            if status != "open":
                raise CodeRefused("used" if status == "redeemed" else status)
            if self.db.execute("UPDATE codes SET redeemed_at = ?, redeemed_by = ? WHERE id = ? AND redeemed_at IS NULL",
                               (self.ledger.now(), account.id, code.id)).rowcount != 1:
                raise CodeRefused("used")
            account = self.ledger.change_balance(account.id, code.credit, "redeem", f"code:{code.id}", code.paid)
        return self._code("c.id = ?", code.id), account

    def apply_payment(self, payment: Payment) -> tuple[Account, bool]:
        checked_amount(payment.credit, "credit")
        checked_amount(payment.paid, "paid", allow_zero=True)
        with savepoint(self.db):
            account = self.ledger.get_account(payment.username)
            try:
                with savepoint(self.db):  # PostgreSQL: a failed statement spoils its transaction, not the savepoint's
                    self.db.execute("INSERT INTO payments (provider, event_id, account_id, paid, credit, created_at, ref) "
                                    "VALUES (?, ?, ?, ?, ?, ?, ?)", (payment.provider, payment.event_id, account.id,
                                                                     payment.paid, payment.credit, self.ledger.now(),
                                                                     payment.ref))
            except self.db.IntegrityError:
                return account, False
            account = self.ledger.change_balance(account.id, payment.credit, "payment",
                                                 f"{payment.provider}:{payment.event_id}", payment.paid)
        return account, True

    # -- reports ----------------------------------------------------------------------
    def usage_page(self, username: str | None, limit: int, before: str | None = None,
                   key_prefix: str | None = None, model: str | None = None, since: float | None = None,
                   until: float | None = None) -> list[UsageLine]:
        where, args = [], []
        for clause, value in (("a.username = ?", username), ("k.prefix = ?", key_prefix), ("u.model = ?", model),
                              ("u.created_at >= ?", since), ("u.created_at < ?", until)):
            if value is not None:
                where.append(clause)
                args.append(value)
        if before is not None:
            where.append("(u.created_at, u.request_id) < (SELECT created_at, request_id FROM usage WHERE request_id = ?)")
            args.append(before)
        columns = ", ".join(f"u.{c}" for c in USAGE_COLUMNS)
        rows = self.db.query(
            f"SELECT {columns}, a.username AS _username, k.prefix AS _prefix FROM usage u "
            "JOIN accounts a ON a.id = u.account_id JOIN api_keys k ON k.id = u.key_id "
            + (f"WHERE {' AND '.join(where)} " if where else "")
            + "ORDER BY u.created_at DESC, u.request_id DESC LIMIT ?", (*args, limit))
        out = []
        for r in rows:
            username_, prefix = r.pop("_username"), r.pop("_prefix")
            out.append(UsageLine(UsageRow(**{**r, "stream": bool(r["stream"]), "partial": bool(r["partial"])}),
                                 username_, prefix))
        return out

    def ledger_page(self, username: str, limit: int, before: int | None = None) -> list[LedgerEntry]:
        account = self.ledger.get_account(username)
        older, args = ("", ()) if before is None else ("AND id < ? ", (before,))
        return [LedgerEntry(**r) for r in self.db.query(
            f"SELECT {LEDGER_COLUMNS} FROM ledger "
            f"WHERE account_id = ? {older}ORDER BY id DESC LIMIT ?", (account.id, *args, limit))]

    def paid_total(self, username: str) -> int:
        account = self.ledger.get_account(username)
        return self.db.execute("SELECT COALESCE(SUM(paid), 0) FROM ledger WHERE account_id = ?",
                               (account.id,)).fetchone()[0]

    def spend_by_day(self, username: str, since: str) -> list[tuple[str, int]]:
        account = self.ledger.get_account(username)
        return [(day_of(day), total) for day, total in self.db.execute(
            f"SELECT {SPEND_DAY} AS day, SUM(cost) FROM usage WHERE account_id = ? AND created_at >= ? "
            "GROUP BY day ORDER BY day", (account.id, spend_day_start(since))).fetchall()]
