"""Money in, by the providers of the gateway's payment registry (payments/registry.py,
attached to the app here, one per running gateway): Errors in the Anthropic shape.

- ``POST /api/topup/checkout {"amount_usd": N}``: a card payment (Stripe Checkout) of
  N dollars, $1 to $500 in whole cents, for the logged-in user (a session, with the
  cross-site refusal of every cookie-authenticated change; an API key works too):
  ``{"url": ...}``, the payment page. 404 when card payments are off.
- ``POST /api/payments/NAME/webhook``: provider NAME's signed events (``stripe``; the
  house format's ``webhook``, also at its first address ``/api/payments/webhook``),
  authenticated by their signature, not by a key or a session; 404 when NAME is off.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from quart import Blueprint, Quart, Response, current_app, request

from ... import errors
from ...money import MICRO
from ...payments import registry
from ...payments.registry import TOPUP_MAX, TOPUP_MIN, Payments
from .. import error_shapes, identity
from ..context import gateway_of, request_headers
from ..responses import json_response

PATH = "/api/payments/webhook"         # the house format's first address
PROVIDER_PATH = "/api/payments/<name>/webhook"
CHECKOUT = "/api/topup/checkout"
EXTENSION = "cheaplm.payments"
CLAIMED = (PATH, "/api/payments/", CHECKOUT)  # errors in the Anthropic shape


def blueprint() -> Blueprint:
    bp = Blueprint("payments_api", __name__)
    bp.record(_set_up)
    bp.post(PATH)(house_webhook)
    bp.post(PROVIDER_PATH)(webhook)
    bp.post(CHECKOUT)(checkout)
    return bp


def _set_up(state) -> None:
    install(state.app)
    for path in CLAIMED:
        error_shapes.claim(state.app, path, error_shapes.anthropic)


def install(app: Quart) -> None:
    """Once per app: the payment registry, built from the gateway's configuration."""
    identity.install(app)
    if EXTENSION not in app.extensions:
        gateway = gateway_of(app)
        app.extensions[EXTENSION] = registry.build(gateway.config, gateway.store, app.extensions[identity.EXTENSION])


def current_payments() -> Payments:
    return current_app.extensions[EXTENSION]


async def house_webhook() -> Response:
    return await webhook("webhook")


async def webhook(name: str) -> Response:
    provider = current_payments().webhook(name)
    if provider is None:
        raise errors.not_found(f"No {name} payment webhook is configured on this gateway")
    return json_response(await provider.receive(await request.get_data(), request_headers()))


def checkout_amount(value: object) -> int:
    """``amount_usd``: a JSON number of dollars, TOPUP_MIN to TOPUP_MAX, in whole cents -> micro-USD."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise errors.invalid_request("amount_usd must be a number of dollars", "amount_usd")
    try:
        dollars = Decimal(str(value))
    except InvalidOperation:
        raise errors.invalid_request("amount_usd must be a number of dollars", "amount_usd") from None
    if not (dollars.is_finite() and TOPUP_MIN <= dollars <= TOPUP_MAX):
        raise errors.invalid_request(f"amount_usd must be from {TOPUP_MIN} to {TOPUP_MAX}", "amount_usd")
    if dollars != round(dollars, 2):
        raise errors.invalid_request("amount_usd must be in whole cents", "amount_usd")
    return int(dollars * MICRO)


async def checkout() -> Response:
    card = current_payments().card
    who = await identity.caller()
    if card is None:
        raise errors.not_found("Card payments are not configured on this gateway")
    paid = checkout_amount((await identity.json_body()).get("amount_usd"))
    url = await card.checkout(who.account_id, who.username, paid, identity.own_origin())
    return json_response({"url": url})
