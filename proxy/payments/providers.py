"""The payment seam: how money paid somewhere becomes credit here, without any provider
touching the ledger itself.

A ``PaymentProvider`` turns its proof of a payment (a redemption code a user types; a
signed webhook event an online provider posts) into credit through the store's two
exactly-once operations: ``redeem_code`` (a code is spent once) and ``apply_payment``
(one (provider, event id) is applied once, so a webhook delivered twice credits once).
Two providers here: redemption codes, and ``SignedWebhook``, the house format of an
online provider's notice (an HMAC-SHA256 of ``timestamp.body``, as Stripe signs); Stripe
Checkout itself is stripe.py; registry.py builds the ones the configuration turns on.
Every provider's credit is ``money.credit_for``: the value multiplier and the bonus table.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Mapping, Protocol

import orjson

from ..accounts.service import AccountError, Accounts
from ..money import credit_for, format_usd, parse_usd
from storage.base import Account, Payment, Store


@dataclass(frozen=True)
class Credited:
    """What one proof came to: the account after it, and whether it was applied now
    (False: that payment was applied before; nothing changed)."""

    account: Account
    paid: int
    credit: int
    applied: bool


class PaymentProvider(Protocol):
    name: str

    async def confirm(self, proof: bytes, headers: Mapping[str, str], username: str | None,
                      ip: str | None) -> Credited:
        """Credit what ``proof`` proves was paid, exactly once; AccountError (400, 401,
        429) when it proves nothing."""


class WebhookProvider(Protocol):
    """A provider that is told of payments by signed events (POST /api/payments/NAME/webhook)."""

    name: str

    async def receive(self, body: bytes, headers: Mapping[str, str]) -> dict:
        """Verify the event and act on it once: the JSON answer (AccountError when forged)."""


@dataclass
class CodeProvider:
    """Redemption codes (``cheaplm code create``): the proof is the code, redeemed by the
    logged-in user."""

    accounts: Accounts
    name: str = "code"

    async def confirm(self, proof: bytes, headers: Mapping[str, str], username: str | None,
                      ip: str | None) -> Credited:
        if username is None:
            raise AccountError("log in to redeem a code", 401)
        code, account = await self.accounts.redeem(username, proof.decode("utf-8", "replace"), ip)
        return Credited(account, code.paid, code.credit, True)


@dataclass
class SignedWebhook:
    """An online provider's webhook: ``{"id": event id, "username": ..., "paid_usd": "10.00"}``
    signed with the shared secret (header ``signature: t=TIMESTAMP,v1=HEX``, HMAC-SHA256
    of ``TIMESTAMP.BODY``), refused when older than ``tolerance`` seconds."""

    store: Store
    secret: bytes
    multiplier: Decimal
    bonus: tuple[tuple[int, int], ...] = ()
    name: str = "webhook"
    tolerance: float = 300.0
    clock: Callable[[], float] = time.time

    def sign(self, body: bytes, at: float) -> str:
        stamp = str(int(at))
        return f"t={stamp},v1=" + hmac.new(self.secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()

    def _verified(self, proof: bytes, headers: Mapping[str, str]) -> dict:
        parts = dict(p.split("=", 1) for p in headers.get("signature", "").split(",") if "=" in p)
        stamp = parts.get("t", "")
        # ASCII digits only, and few: str.isdigit takes "²", and int() a 5000-digit time slowly
        readable = stamp.isascii() and stamp.isdigit() and len(stamp) <= 12
        if not readable or abs(self.clock() - int(stamp)) > self.tolerance:
            raise AccountError("webhook signature missing or too old", 401)
        expected = self.sign(proof, int(stamp)).rpartition("v1=")[2]
        if not hmac.compare_digest(parts.get("v1", "").encode(), expected.encode()):
            raise AccountError("webhook signature does not match", 401)
        try:
            event = json.loads(proof)
            orjson.loads(proof)  # strict: no lone surrogate (which Python's json reads and the store cannot write)
        except (ValueError, RecursionError):
            event = None
        if not isinstance(event, dict) or not all(isinstance(event.get(k), str) for k in ("id", "username",
                                                                                          "paid_usd")):
            raise AccountError("webhook event must carry id, username and paid_usd (strings)")
        return event

    async def confirm(self, proof: bytes, headers: Mapping[str, str], username: str | None,
                      ip: str | None) -> Credited:
        event = self._verified(proof, headers)
        try:
            paid = parse_usd(event["paid_usd"])
        except ValueError as exc:
            raise AccountError(str(exc)) from None
        if paid <= 0:
            raise AccountError("paid_usd must be positive")
        credit = credit_for(paid, self.multiplier, self.bonus)
        account, applied = await self.store.apply_payment(Payment(self.name, event["id"][:200], event["username"],
                                                                  paid, credit))
        return Credited(account, paid, credit, applied)

    async def receive(self, body: bytes, headers: Mapping[str, str]) -> dict:
        credited = await self.confirm(body, headers, None, None)
        if not credited.applied:
            # A redelivery: its figures (which may name another user or amount) are not what
            # was credited, so they are not echoed back as if they were.
            return {"success": True, "applied": False, "message": "This event was applied before: nothing credited now"}
        return {"success": True, "applied": True, "username": credited.account.username,
                "paid_usd": format_usd(credited.paid), "credited_usd": format_usd(credited.credit)}
