"""The charge of a stream whose hold another instance recovered while this one was
paused (SIGSTOP, a long GC, a frozen VM past its lease): the recovery charged what the
last progress checkpoint said (or nothing, without one); the stream's own instance knows
what the client really received and charges the rest here, within the available balance."""

from __future__ import annotations

from dataclasses import replace

from ..records import UsageRow, checked_amount
from ..caps import spend_day
from .db import savepoint
from .ledger import Ledger


class LateCharges:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.db = ledger.db

    def charge_recovered(self, hold_id: int, row: UsageRow) -> int:
        checked_amount(row.cost, "charge", allow_zero=True)
        with savepoint(self.db):
            found = self.db.execute("SELECT account_id, state FROM holds WHERE id = ? AND request_id = ?",
                                    (hold_id, row.request_id)).fetchone()
            if found is None or found[1] not in ("settled_on_recovery", "released_on_recovery"):
                return 0
            account_id, state = found
            charged = self.db.execute("SELECT cost FROM usage WHERE request_id = ?", (row.request_id,)).fetchone()
            before = charged[0] if charged is not None else 0
            extra = min(max(row.cost - before, 0), max(self._available(account_id), 0))
            if charged is None:
                if extra:
                    self.ledger.change_balance(account_id, -extra, "charge", row.request_id)
                self.ledger.write_usage(account_id, replace(row, cost=extra, uncharged=row.cost - extra,
                                                            server_tool_cost=min(row.server_tool_cost, extra)))
                return extra
            if extra:
                self.ledger.change_balance(account_id, -extra, "late_charge", row.request_id)
                self.db.execute("UPDATE usage SET cost = cost + ?, output_tokens = CASE WHEN output_tokens < ? "
                                "THEN ? ELSE output_tokens END, uncharged = ? WHERE request_id = ?",
                                (extra, row.output_tokens, row.output_tokens, max(row.cost - before - extra, 0),
                                 row.request_id))
                key_id, created_at = self.db.execute("SELECT key_id, created_at FROM usage WHERE request_id = ?",
                                                     (row.request_id,)).fetchone()
                self.db.execute("INSERT INTO key_spend (key_id, day, spent) VALUES (?, ?, ?) "
                                "ON CONFLICT (key_id, day) DO UPDATE SET spent = key_spend.spent + excluded.spent",
                                (key_id, spend_day(created_at), extra))
            return extra

    def _available(self, account_id: int) -> int:
        balance, held = self.db.execute("SELECT balance, held FROM accounts WHERE id = ?", (account_id,)).fetchone()
        return balance - held
