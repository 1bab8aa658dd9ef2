"""The operations on applied payments' refunds, written once for every SQL backend.

A refund takes back, of a payment's credit, what the account still has available; the
rest is recorded as owed on the payment (a balance never goes below what is held)."""

from __future__ import annotations

from ..errors import NotFound
from ..records import Account, PaymentRecord
from .db import savepoint
from .ledger import Ledger

_PAYMENT = ("SELECT p.provider, p.event_id, p.ref, a.username, p.paid, p.credit, p.refunded, p.taken_back, p.owed, "
            "p.created_at, p.account_id FROM payments p JOIN accounts a ON a.id = p.account_id ")


class Payments:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.db = ledger.db

    def _row(self, where: str, *args: object) -> tuple[PaymentRecord, int] | None:
        rows = list(self.db.query(_PAYMENT + "WHERE " + where, args))
        if not rows:
            return None
        account_id = rows[0].pop("account_id")
        return PaymentRecord(**rows[0]), account_id

    def find_payment(self, provider: str, ref: str) -> PaymentRecord | None:
        found = (self._row("p.provider = ? AND p.ref = ?", provider, ref)
                 or self._row("p.provider = ? AND p.event_id = ?", provider, ref))
        return None if found is None else found[0]

    def refund_payment(self, provider: str, event_id: str, refunded: int,
                       take_back: int) -> tuple[PaymentRecord, Account, int, int]:
        with savepoint(self.db):
            # Take the payment's row lock before reading it (a no-op write: portable, unlike
            # FOR UPDATE), so concurrent refund events of one payment apply one at a time.
            self.db.execute("UPDATE payments SET refunded = refunded WHERE provider = ? AND event_id = ?",
                            (provider, event_id))
            found = self._row("p.provider = ? AND p.event_id = ?", provider, event_id)
            if found is None:
                raise NotFound(f"no {provider} payment {event_id}")
            payment, account_id = found
            account = self.ledger._account_row("id = ?", account_id)
            if refunded <= payment.refunded:  # this refund total (or a larger one) was applied already
                return payment, account, 0, 0
            due = max(0, min(take_back, payment.credit) - payment.taken_back - payment.owed)
            taken = min(due, max(0, account.available))
            if taken:
                account = self.ledger.change_balance(account_id, -taken, "refund", f"{provider}:{event_id}")
            self.db.execute("UPDATE payments SET refunded = ?, taken_back = taken_back + ?, owed = owed + ? "
                            "WHERE provider = ? AND event_id = ?", (refunded, taken, due - taken, provider, event_id))
            after = self._row("p.provider = ? AND p.event_id = ?", provider, event_id)
        return after[0], account, taken, due - taken
