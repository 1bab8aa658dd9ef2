"""POST /api/payments/webhook: an online provider's signed notice of a payment
(payments.SignedWebhook), credited once per event id however often it is delivered.
Off (404) unless ``[accounts] webhook_secret`` is set; authenticated by its signature,
not by a key or a session. Errors in the Anthropic shape."""

from __future__ import annotations

from quart import Blueprint, Response, request

from ... import errors
from ...money import format_usd
from ...payments.providers import SignedWebhook
from .. import error_shapes, identity
from ..context import current_gateway, request_headers
from ..responses import json_response

PATH = "/api/payments/webhook"


def blueprint() -> Blueprint:
    bp = Blueprint("payments_api", __name__)
    bp.record(_set_up)
    bp.post(PATH)(webhook)
    return bp


def _set_up(state) -> None:
    identity.install(state.app)
    error_shapes.claim(state.app, PATH, error_shapes.anthropic)


async def webhook() -> Response:
    gateway = current_gateway()
    secret = gateway.config.accounts.webhook_secret
    if not secret:
        raise errors.not_found("No payment webhook is configured on this gateway")
    provider = SignedWebhook(gateway.store, secret.encode(), gateway.config.value_multiplier)
    credited = await provider.confirm(await request.get_data(), request_headers(), None, identity.the_client_ip())
    return json_response({"success": True, "applied": credited.applied, "username": credited.account.username,
                          "paid_usd": format_usd(credited.paid), "credited_usd": format_usd(credited.credit)})
