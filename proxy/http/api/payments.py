"""POST /api/payments/webhook: an online provider's signed notice of a payment
(payments.SignedWebhook), credited once per event id however often it is delivered.
Off (404) unless ``[accounts] webhook_secret`` is set; authenticated by its signature,
not by a key or a session. Errors in the Anthropic shape."""

from __future__ import annotations

import json
from typing import Mapping

import orjson
from quart import Blueprint, Response, request

from ... import errors
from ...money import format_usd
from ...payments.providers import SignedWebhook
from .. import error_shapes, identity
from ..context import current_gateway, request_headers
from ..params import ascii_int
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
    body, headers = await request.get_data(), request_headers()
    _refuse_what_the_provider_cannot_read(body, headers)
    credited = await provider.confirm(body, headers, None, identity.the_client_ip())
    if not credited.applied:
        # A redelivery: the first delivery of this event id was credited, this one is not.
        # Its figures (which may name another user or amount) are not what was credited,
        # so they are not echoed back as if they were.
        return json_response({"success": True, "applied": False,
                              "message": "This event was applied before: nothing credited now"})
    return json_response({"success": True, "applied": True, "username": credited.account.username,
                          "paid_usd": format_usd(credited.paid), "credited_usd": format_usd(credited.credit)})


def _refuse_what_the_provider_cannot_read(body: bytes, headers: Mapping[str, str]) -> None:
    """What made the webhook a 500: a signature time that ``str.isdigit`` takes and ``int``
    refuses ("²", 5000 digits): 401 as for any bad signature; and an event whose JSON
    holds a lone surrogate ("\\ud800", which Python's json reads and the store cannot
    write): 400."""
    parts = dict(p.split("=", 1) for p in headers.get("signature", "").split(",") if "=" in p)
    if "t" in parts and ascii_int(parts["t"], 12) is None:
        raise errors.GatewayError(401, "webhook signature missing or too old", "authentication_error")
    try:
        orjson.loads(body)  # strict: no lone surrogates, NaN or Infinity
    except orjson.JSONDecodeError:
        try:
            json.loads(body)
        except ValueError:
            return  # not JSON at all: the provider says so, after the signature
        except RecursionError:
            pass  # nested deeper than Python's json reads
        raise errors.invalid_request("webhook event must be valid JSON (no lone surrogates, NaN or Infinity, "
                                     "nested at most 1024 deep)")
