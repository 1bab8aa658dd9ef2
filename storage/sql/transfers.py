"""Transfers made under an idempotency key (as Stripe's API takes them): the same key with
the same request within IDEMPOTENCY_SECONDS returns the first transfer's receipt and moves
nothing; the same key with another request is refused (IdempotencyConflict). The check,
the transfer and the key's record are one transaction, so concurrent retries move the
money once. Only a transfer that happened is recorded: a refused one may be retried."""

from __future__ import annotations

import json

from ..errors import IdempotencyConflict
from ..records import TransferReceipt
from .db import savepoint
from .ledger import Ledger

IDEMPOTENCY_SECONDS = 24 * 3600


class Transfers:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.db = ledger.db

    def transfer_once(self, from_account_id: int, to_username: str, amount: int, ref: str, key_id: int | None,
                      idempotency_key: str, request_hash: str) -> TransferReceipt:
        now = self.ledger.clock()
        with savepoint(self.db):
            # Take both accounts' row locks first, in id order (the transfer's own order), so
            # concurrent retries under one key wait here and then see the first one's record
            # (a portable no-op write: SQLite serialises writers anyway).
            receiver = self.db.execute("SELECT id FROM accounts WHERE username = ?", (to_username,)).fetchone()
            for account_id in sorted({from_account_id, *([receiver[0]] if receiver else [])}):
                self.db.execute("UPDATE accounts SET balance = balance WHERE id = ?", (account_id,))
            self.db.execute("DELETE FROM transfer_keys WHERE account_id = ? AND created_at < ?",
                            (from_account_id, now - IDEMPOTENCY_SECONDS))
            found = self.db.execute("SELECT body_hash, response FROM transfer_keys WHERE account_id = ? AND "
                                    "idempotency_key = ?", (from_account_id, idempotency_key)).fetchone()
            if found is not None:
                if found[0] != request_hash:
                    raise IdempotencyConflict("this Idempotency-Key was used for a different transfer")
                return TransferReceipt(**json.loads(found[1]), replayed=True)
            sender, receiver = self.ledger.transfer(from_account_id, to_username, amount, ref, key_id)
            receipt = TransferReceipt(amount, sender.username, receiver.username, sender.balance, receiver.balance)
            stored = _fields(receipt)
            self.db.execute("INSERT INTO transfer_keys (account_id, idempotency_key, body_hash, response, "
                            "created_at) VALUES (?, ?, ?, ?, ?)",
                            (from_account_id, idempotency_key, request_hash, json.dumps(stored), now))
        return receipt


def _fields(receipt: TransferReceipt) -> dict:
    return {"amount": receipt.amount, "from_username": receipt.from_username, "to_username": receipt.to_username,
            "sender_balance": receipt.sender_balance, "receiver_balance": receipt.receiver_balance}
