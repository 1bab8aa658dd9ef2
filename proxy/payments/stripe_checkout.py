"""Card payments by Stripe Checkout, through the official ``stripe`` library (its retries,
idempotency keys and webhook signature checks; no hand-written Stripe HTTP).

``checkout``: a Checkout Session in payment mode for exactly the amount asked, naming the
user (``client_reference_id`` and ``metadata``), with an idempotency key per account,
amount and minute, so a double click makes one session. The library's HTTP calls are
synchronous: they run in worker threads, at most ``CALLS_AT_ONCE`` at a time.

``receive``: a webhook event, verified with the library (``Stripe-Signature``, its default
tolerance; refused with 400 otherwise). ``checkout.session.completed`` (and
``checkout.session.async_payment_succeeded``) with ``payment_status == "paid"`` credits
``amount_total`` x the value multiplier (plus the bonus table's step) once per Checkout
Session, however many events name it; ``charge.refunded`` takes back, in proportion to
what was refunded, what is still available of that credit and records the rest as owed;
every other event is acknowledged and ignored.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Callable, Mapping

import stripe
import trio

from ..accounts.service import AccountError
from ..config import StripeConfig
from ..errors import GatewayError
from ..money import MICRO, credit_for, format_usd, round_half_up
from storage.base import NotFound, Payment, Store

log = logging.getLogger("cheaplm.payments.stripe")

NAME = "stripe"
MICRO_PER_CENT = MICRO // 100
CALLS_AT_ONCE = 4              # worker threads in Stripe's HTTP calls at once
TIMEOUT = 30.0                 # seconds, per HTTP attempt of the library
RETRIES = 2                    # the library's network retries (safe: every call has an idempotency key)
DOUBLE_CLICK = 60              # seconds: the same account and amount within the same minute make one session
PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
REFUND_EVENT = "charge.refunded"


def idempotency_key(account_id: int, paid: int, now: float) -> str:
    """One Checkout Session per account, amount and minute (Stripe keeps keys 24 hours)."""
    seed = f"cheaplm-checkout:{account_id}:{paid}:{int(now // DOUBLE_CLICK)}"
    return "cheaplm-" + hashlib.sha256(seed.encode()).hexdigest()[:40]


@dataclass
class StripeCheckout:
    store: Store
    config: StripeConfig
    multiplier: Decimal
    bonus: tuple[tuple[int, int], ...] = ()
    clock: Callable[[], float] = time.time
    name: str = NAME
    client: stripe.StripeClient = field(init=False, repr=False)
    calls: trio.CapacityLimiter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.client = stripe.StripeClient(self.config.secret_key, base_addresses={"api": self.config.api_base},
                                          max_network_retries=RETRIES,
                                          http_client=stripe.RequestsClient(timeout=TIMEOUT))
        self.calls = trio.CapacityLimiter(CALLS_AT_ONCE)

    # -- paying --------------------------------------------------------------------------
    async def checkout(self, account_id: int, username: str, paid: int, origin: str) -> str:
        """A Checkout Session for ``paid`` micro-USD (whole cents): the URL to send the payer to."""
        value = format_usd(credit_for(paid, self.multiplier, self.bonus))
        named = {"cheaplm_username": username, "cheaplm_account_id": str(account_id)}
        params = {
            "mode": "payment",
            "line_items": [{"quantity": 1, "price_data": {
                "currency": self.config.currency, "unit_amount": paid // MICRO_PER_CENT,
                "product_data": {"name": f"CheapLM API credit (${value.rstrip('0').rstrip('.')} of API value)"}}}],
            "client_reference_id": f"cheaplm-{account_id}",
            "metadata": named,
            "payment_intent_data": {"metadata": named},
            "success_url": origin + "/dashboard/topup?checkout=success",
            "cancel_url": origin + "/dashboard/topup?checkout=cancelled",
        }
        create = partial(self.client.v1.checkout.sessions.create, params,
                         {"idempotency_key": idempotency_key(account_id, paid, self.clock())})
        try:
            session = (await trio.to_thread.run_sync(create, limiter=self.calls)).to_dict()
        except stripe.StripeError as exc:
            log.error("Stripe refused or did not answer a Checkout Session for %s: %s", username,
                      getattr(exc, "user_message", None) or type(exc).__name__)
            raise GatewayError(502, "The card payment provider could not start the payment; nothing was charged. "
                                    "Try again in a moment.", "api_error") from None
        if not session.get("url"):
            raise GatewayError(502, "The card payment provider answered without a payment page", "api_error")
        log.info("Checkout Session %s for %s: $%s", session["id"], username, format_usd(paid))
        return session["url"]

    # -- being told ----------------------------------------------------------------------
    async def receive(self, body: bytes, headers: Mapping[str, str]) -> dict:
        try:
            event = self.client.construct_event(body, headers.get("stripe-signature"),
                                                self.config.webhook_secret).to_dict()
        except stripe.SignatureVerificationError:
            raise AccountError("Stripe-Signature missing, forged or too old") from None
        except ValueError:
            raise AccountError("the event is not JSON") from None
        kind = event.get("type")
        thing = (event.get("data") or {}).get("object") or {}
        if kind in PAID_EVENTS:
            return await self._paid(event.get("id"), thing)
        if kind == REFUND_EVENT:
            return await self._refunded(event.get("id"), thing)
        return {"received": True, "ignored": f"event type {kind!r}"}

    async def _paid(self, event_id: object, session: dict) -> dict:
        metadata = session.get("metadata") or {}
        username, session_id = metadata.get("cheaplm_username"), session.get("id")
        if session.get("mode") != "payment" or not username or not isinstance(session_id, str):
            return {"received": True, "ignored": "not a top-up of this gateway"}
        if session.get("payment_status") != "paid":
            return {"received": True, "ignored": f"payment status {session.get('payment_status')!r}"}
        cents = session.get("amount_total")
        if session.get("currency") != self.config.currency or not isinstance(cents, int) or cents <= 0:
            log.error("STRIPE: Checkout Session %s for %s is %r %r, not a positive amount in %s: NOT credited",
                      session_id, username, cents, session.get("currency"), self.config.currency)
            return {"received": True, "ignored": "amount or currency"}
        paid = cents * MICRO_PER_CENT
        credit = credit_for(paid, self.multiplier, self.bonus)
        ref = session.get("payment_intent")
        try:
            account, applied = await self.store.apply_payment(Payment(
                NAME, session_id, username, paid, credit, ref if isinstance(ref, str) else None))
        except NotFound:
            log.error("STRIPE: Checkout Session %s (event %s) paid $%s for %r, who has no account: NOT credited",
                      session_id, event_id, format_usd(paid), username)
            return {"received": True, "ignored": "no such account"}
        if applied:
            log.info("Stripe payment: %s paid $%s, credited $%s (Checkout Session %s)", username,
                     format_usd(paid), format_usd(credit), session_id)
        return {"received": True, "credited": applied, "username": account.username, "session": session_id,
                "paid_usd": format_usd(paid), "credited_usd": format_usd(credit)}

    async def _refunded(self, event_id: object, charge: dict) -> dict:
        intent, cents = charge.get("payment_intent"), charge.get("amount_refunded")
        payment = await self.store.find_payment(NAME, intent) if isinstance(intent, str) else None
        if payment is None or not isinstance(cents, int) or cents < 0:
            log.warning("Stripe refund event %s names no top-up of this gateway (payment intent %r)", event_id, intent)
            return {"received": True, "ignored": "no top-up of this gateway"}
        refunded = min(cents * MICRO_PER_CENT, payment.paid)
        take_back = round_half_up(payment.credit * refunded, payment.paid)
        after, account, taken, owed = await self.store.refund_payment(NAME, payment.event_id, refunded, take_back)
        if taken or owed:
            log.warning("STRIPE REFUND: %s was refunded $%s of $%s (Checkout Session %s): took back $%s of API value"
                        "%s", account.username, format_usd(after.refunded), format_usd(after.paid), after.event_id,
                        format_usd(taken), f"; OWED ${format_usd(owed)} (spent already)" if owed else "")
        if owed:
            log.error("STRIPE REFUND: %s owes $%s of API value spent before the refund of Checkout Session %s",
                      account.username, format_usd(after.owed), after.event_id)
        return {"received": True, "username": account.username, "session": after.event_id,
                "refunded_usd": format_usd(after.refunded), "taken_back_usd": format_usd(taken),
                "owed_usd": format_usd(owed)}
