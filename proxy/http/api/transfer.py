"""The reseller transfer API (product docs): POST /api/user/transfer.

Moves balance from the caller's account (an API key's owner, or a logged-in session's) to another user's, atomically, with a
ledger entry on each side. Answers in the documented shape; every error, its own
refusals and Quart's alike, as ``{"success": false, "error": "<documented error>",
"message": "<detail>"}`` (``error_body``, the shape this blueprint claims its path for).
"""

from __future__ import annotations

import hashlib
import re
from typing import Awaitable, Callable, TypeVar

import orjson
from quart import Blueprint, Response, current_app, request
from quart.blueprints import BlueprintSetupState

from ...errors import GatewayError
from ...money import MAX_AMOUNT, MICRO, format_usd, parse_usd, usd_number
from ...ids import new_request_id
from .. import error_shapes, identity
from ..context import gateway_of
from ..identity import Caller, caller
from ..responses import json_response
from storage.base import (Account, IdempotencyConflict, InsufficientBalance, NotFound, SpendCapReached,
                          TransferReceipt)

T = TypeVar("T")

PATH = "/api/user/transfer"
LIMITER = "cheaplm.transfer_limiter"
# The same rate per account, whatever key or session it sends with: each transfer looks
# its recipient up, and an account with many keys would otherwise probe usernames at
# the rate of all of them.
ACCOUNT_LIMITER = "cheaplm.transfer_account_limiter"
# The documented error word for each status this API answers with.
ERROR_WORDS = {400: "Invalid request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
               405: "Method not allowed", 408: "Request timeout", 413: "Request too large", 422: "Unprocessable",
               429: "Rate limited", 503: "Service unavailable"}


class Refused(GatewayError):
    """A transfer refused with a documented error word of its own ("Invalid amount")."""

    def __init__(self, status: int, word: str, message: str) -> None:
        super().__init__(status, message)
        self.word = word


def error_body(error: GatewayError, request_id: str) -> dict:
    """Any GatewayError in this API's documented shape (the 401/403 of a refused key,
    the 413/405 Quart raises, a 500, a 503 of the ledger)."""
    word = error.word if isinstance(error, Refused) else ERROR_WORDS.get(error.status, "Server error")
    return {"success": False, "error": word, "message": error.message}


def blueprint() -> Blueprint:
    """Registered after the gateway is attached to the app (its rate limit is read then)."""
    bp = Blueprint("transfer", __name__)
    bp.record(_set_up)
    bp.post(PATH)(transfer)
    return bp


def _set_up(state: BlueprintSetupState) -> None:
    config = gateway_of(state.app).config
    limits = gateway_of(state.app).limits
    state.app.extensions[LIMITER] = limits.bucket("transfer", config.transfers_per_minute)
    state.app.extensions[ACCOUNT_LIMITER] = limits.bucket("transfer_account", config.transfers_per_minute)
    error_shapes.claim(state.app, PATH, error_body)
    identity.install(state.app)


_DOLLARS = re.compile(r"[0-9]{1,10}(\.[0-9]{1,6})?")


def usd_amount(value) -> int | None:
    """Dollars as a JSON number (or a plain decimal string such as "12.50") -> micro-USD;
    None unless positive, at most six decimals and at most MAX_AMOUNT. A string must be
    plain digits (no exponent, separators or spaces): nothing huge is ever built."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    if isinstance(value, str) and not _DOLLARS.fullmatch(value):
        return None
    if isinstance(value, float) and not 0 < value <= MAX_AMOUNT / MICRO:  # NaN fails too
        return None
    try:  # exact or refused, bounded before anything is built (money.parse_usd)
        micro = parse_usd(repr(value) if isinstance(value, float) else value)
    except ValueError:
        return None
    return micro if 0 < micro <= MAX_AMOUNT else None


async def transfer() -> Response:
    key = await caller()  # an API key, or a logged-in browser's session (identity.py)
    idempotency_key = _idempotency_key()
    await check_rate(key)
    to_username, amount = _order(await request.get_data())
    if idempotency_key is None:
        sender, receiver = await send(key, to_username, amount)
        receipt = TransferReceipt(amount, sender.username, receiver.username, sender.balance, receiver.balance)
    else:
        receipt = await _refused_in_words(to_username, amount, key, lambda: identity.current_accounts().transfer_once(
            key.account_id, to_username, amount, new_request_id(), key.key.id if key.key else None,
            idempotency_key, _request_hash(to_username, amount)))
    return json_response({
        "success": True, "amount": usd_number(receipt.amount), "from": receipt.from_username,
        "to": receipt.to_username, "senderNewBalance": usd_number(receipt.sender_balance),
        "receiverNewBalance": usd_number(receipt.receiver_balance),
    }, headers=[("idempotent-replayed", "true")] if receipt.replayed else ())


_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def _idempotency_key() -> str | None:
    """The request's Idempotency-Key header (1 to 255 printable ASCII characters), or None."""
    value = request.headers.get("idempotency-key")
    if value is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(value):
        raise Refused(400, "Invalid request", "Idempotency-Key must be 1 to 255 printable ASCII characters")
    return value


def _request_hash(to_username: str, amount: int) -> str:
    """What makes two transfers the same request: the receiver and the amount."""
    return hashlib.sha256(f"{to_username}\n{amount}".encode()).hexdigest()


def _order(raw: bytes) -> tuple[str, int]:
    """(toUsername, micro-USD) from the request body, or the documented 400."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Refused(400, "Invalid request", "Body must be JSON: {\"toUsername\": ..., \"amount\": ...}") from None
    if not isinstance(body, dict) or not isinstance(body.get("toUsername"), str) or not body["toUsername"]:
        raise Refused(400, "Invalid request", "toUsername (string) is required")
    amount = usd_amount(body.get("amount"))
    if amount is None:
        raise Refused(400, "Invalid amount", "amount must be a positive number of dollars, at most 6 decimals and "
                                             "at most 1,000,000,000")
    return body["toUsername"], amount


async def check_rate(key: Caller) -> None:
    """429 past the caller's transfers a minute (per key or session, and per account)."""
    wait = (await current_app.extensions[ACCOUNT_LIMITER].take(("account", key.account_id))
            or await current_app.extensions[LIMITER].take(key.limit_key))
    if wait:
        raise GatewayError(429, f"too many transfers; retry in {wait:.0f} s",
                           headers=(("retry-after", str(max(1, round(wait)))),))


async def send(key: Caller, to_username: str, amount: int) -> tuple[Account, Account]:
    """The store's transfer (the API's and the transfer page's), bounded by the caller's
    key's spend caps; its expected refusals in this API's words. Any other storage error
    goes to the app's one storage mapping (errors.from_store)."""
    return await _refused_in_words(to_username, amount, key, lambda: identity.current_accounts().transfer(
        key.account_id, to_username, amount, new_request_id(), key.key.id if key.key else None))


async def _refused_in_words(to_username: str, amount: int, key: Caller, transfer: Callable[[], Awaitable[T]]) -> T:
    if to_username == key.username:
        raise Refused(400, "Cannot transfer to yourself", "toUsername matches your own username")
    try:
        return await transfer()
    except InsufficientBalance as short:
        raise Refused(400, "Insufficient balance",
                      f"available ${format_usd(max(short.available, 0))}, asked ${format_usd(amount)}") from None
    except NotFound:
        raise Refused(404, "User not found", f"no user {to_username!r}") from None
    except SpendCapReached as cap:
        refused = Refused(429, "Spend cap reached", f"this API key's {cap.period} spend cap of "
                                                    f"${format_usd(cap.cap)} leaves ${format_usd(cap.left)}")
        refused.headers = (("retry-after", str(cap.retry_after)),)
        raise refused from None
    except IdempotencyConflict as conflict:
        raise Refused(422, "Idempotency key reused", str(conflict)) from None
