"""Money an operator or an admin moves, and money users move: top-ups (money paid),
credits and corrections (each with its reason and actor: one audit trail for the CLI
and the web), transfers between users; and the pages of what happened (the ledger,
usage). Part of ``Accounts``.

One ledger kind per act: ``topup`` (money paid, credited at the value multiplier),
``credit`` (API value given, with a reason), ``correction`` (API value taken back, with a
reason; never below zero), ``transfer_out``/``transfer_in``, ``redeem``, ``payment``,
``signup_credit``, ``charge``. (``admin_credit`` is the web's credit kind of ledgers
from before 0008.)
"""

from __future__ import annotations

from decimal import Decimal
from typing import Sequence

from . import audit
from .audit import Actor
from .checks import check_reason, usd
from .errors import AccountError
from ..money import MAX_AMOUNT, format_usd, scale
from storage.base import Account, InsufficientBalance, LedgerEntry, TransferReceipt, UsageLine, UsageRow


TOPUP, CREDIT, CORRECTION = "topup", "credit", "correction"


def paid_to_credit(paid: int, multiplier: Decimal) -> int:
    """Micro-USD of API value for ``paid`` micro-USD (money's one rounding rule)."""
    return scale(paid, multiplier)


class Credits:
    async def topup(self, username: str, paid_usd: str | None = None, credit_usd: str | None = None,
                    reason: str | None = None, actor: Actor | None = None) -> Account:
        """Money paid (``paid_usd``: credits paid x the value multiplier, a 'topup') or,
        with ``credit_usd``, API value given directly (a 'credit': ``credit``)."""
        if (paid_usd is None) == (credit_usd is None):
            raise AccountError("give exactly one of a paid amount or a credit amount", param="paid")
        if credit_usd is not None:
            amount = usd(credit_usd, "the credit", "credit")
            return await self.credit(username, amount, check_reason(reason, False) or "top-up of API value", actor)
        paid = usd(paid_usd, "the paid amount", "paid")
        value = paid_to_credit(paid, self.multiplier)
        if value > MAX_AMOUNT:
            raise AccountError(f"the credit of {format_usd(value)} USD is more than the largest single credit, "
                               f"{format_usd(MAX_AMOUNT)} USD", param="paid")
        account = await self.store.credit(username, value, TOPUP, paid=paid, reason=check_reason(reason, False),
                                          actor=None if actor is None else str(actor))
        audit.record("topup", actor, user=username, paid_usd=format_usd(paid), credit_usd=format_usd(value))
        return account

    async def credit(self, username: str, amount: int, reason: object, actor: Actor | None,
                     paid: int | None = None) -> Account:
        """An operator's change of a balance, with its reason and who made it: a 'credit'
        when ``amount`` > 0, a 'correction' when it is negative, refused when it would
        take the balance (less what open requests hold) below zero."""
        why = check_reason(reason)
        by = None if actor is None else str(actor)
        if amount == 0 or abs(amount) > MAX_AMOUNT:
            raise AccountError(f"the amount must be non-zero and at most {format_usd(MAX_AMOUNT)} USD either way",
                               param="amount")
        if amount > 0:
            account = await self.store.credit(username, amount, CREDIT, paid, reason=why, actor=by)
        else:
            if paid is not None:
                raise AccountError("a correction takes no paid amount", param="paid")
            try:
                account = await self.store.debit(username, -amount, CORRECTION, reason=why, actor=by)
            except InsufficientBalance as short:
                raise AccountError(f"a correction of {format_usd(amount)} USD would take the balance below zero: "
                                   f"{format_usd(max(short.available, 0))} USD is available", param="amount") from None
        audit.record("credit" if amount > 0 else "correction", actor, user=username, amount_usd=format_usd(amount),
                     reason=why)
        return account

    async def transfer(self, from_account_id: int, to_username: str, amount: int, ref: str,
                       key_id: int | None = None) -> tuple[Account, Account]:
        """Move ``amount`` of the sender's available balance to another user (the store's
        InsufficientBalance and NotFound say why not); made by API key ``key_id``, its spend
        caps bound it (SpendCapReached)."""
        return await self.store.transfer(from_account_id, to_username, amount, ref, key_id)

    async def transfer_once(self, from_account_id: int, to_username: str, amount: int, ref: str,
                            key_id: int | None, idempotency_key: str, request_hash: str) -> TransferReceipt:
        """``transfer`` under the sender's Idempotency-Key: a replay returns the first
        receipt and moves nothing; the same key for another request is IdempotencyConflict."""
        return await self.store.transfer_once(from_account_id, to_username, amount, ref, key_id, idempotency_key,
                                              request_hash)

    # -- what happened --------------------------------------------------------------------
    async def ledger_page(self, username: str, limit: int, before: int | None = None
                          ) -> Sequence[LedgerEntry]:
        """The account's ledger entries, newest first, with an id below ``before``."""
        return await self.store.ledger_page(username, limit, before)

    async def usage_page(self, username: str | None, limit: int, before: str | None = None,
                         key_prefix: str | None = None, model: str | None = None, since: float | None = None,
                         until: float | None = None) -> Sequence[UsageLine]:
        """Usage rows of ``username`` (None: everyone's, for an admin), newest first."""
        return await self.store.usage_page(username, limit, before, key_prefix, model, since, until)

    async def usage(self, username: str, limit: int = 20) -> Sequence[UsageRow]:
        """The latest ``limit`` usage rows, newest first."""
        if limit < 1:
            raise AccountError("the limit must be at least 1", param="limit")
        return await self.store.usage(username, limit)

    async def spend_by_day(self, username: str, since: str) -> Sequence[tuple[str, int]]:
        return await self.store.spend_by_day(username, since)
