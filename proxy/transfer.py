"""The reseller transfer API (product docs): POST /api/user/transfer.

Moves balance from the key owner's account to another user's, atomically, with a
ledger entry on each side. Answers in the documented shape; errors as
``{"success": false, "error": "<documented error>", "message": "<detail>"}``.
"""

from __future__ import annotations

import json
import re
from typing import Callable

import orjson
import trio

from quart import Response, request

from . import errors
from .gateway import Gateway
from .money import MAX_AMOUNT, MICRO, format_usd, parse_usd, usd_number
from .relay import new_request_id
from storage.base import InsufficientBalance, NotFound, StoreError, StoreUnavailable

PATH = "/api/user/transfer"
# The documented error word for each status this API answers with.
ERROR_WORDS = {400: "Invalid request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
               405: "Method not allowed", 408: "Request timeout", 413: "Request too large",
               429: "Rate limited", 503: "Service unavailable"}


def _fail(status: int, error: str, message: str) -> Response:
    return Response(json.dumps({"success": False, "error": error, "message": message}), status=status,
                    content_type="application/json")


def error_response(error: errors.GatewayError) -> Response:
    """A GatewayError in this API's documented shape (the 401/403 of a refused key,
    the 413/405 Quart raises, a 500)."""
    response = _fail(error.status, ERROR_WORDS.get(error.status, "Server error"), error.message)
    for name, value in error.headers:
        response.headers[name] = value
    return response


_DOLLARS = re.compile(r"[0-9]{1,10}(\.[0-9]{1,6})?")


def _amount(value) -> int | None:
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


class RateLimiter:
    """A token bucket per key: ``per_minute`` transfers a minute, in bursts of that many."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.buckets: dict[int, tuple[float, float]] = {}  # key id -> (tokens, when)

    def take(self, key_id: int) -> float:
        """0 when allowed; otherwise the seconds until the next transfer is allowed."""
        now = self.clock()
        tokens, when = self.buckets.get(key_id, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - when) * self.rate)
        if tokens >= 1:
            self.buckets[key_id] = (tokens - 1, now)
            return 0.0
        self.buckets[key_id] = (tokens, now)
        return (1 - tokens) / self.rate if self.rate else 60.0


def register(app, gateway: Gateway) -> None:
    limiter = RateLimiter(gateway.config.transfers_per_minute, trio.current_time)

    @app.post(PATH)
    async def transfer() -> Response:
        try:
            key = await gateway.authorize({k.lower(): v for k, v in request.headers.items()}, request.remote_addr)
        except errors.GatewayError as error:
            return error_response(error)
        wait = limiter.take(key.id)
        if wait:
            response = _fail(429, "Rate limited", f"too many transfers; retry in {wait:.0f} s")
            response.headers["retry-after"] = str(max(1, round(wait)))
            return response
        try:
            body = orjson.loads(await request.get_data())
        except orjson.JSONDecodeError:
            return _fail(400, "Invalid request", "Body must be JSON: {\"toUsername\": ..., \"amount\": ...}")
        if not isinstance(body, dict) or not isinstance(body.get("toUsername"), str) or not body["toUsername"]:
            return _fail(400, "Invalid request", "toUsername (string) is required")
        amount = _amount(body.get("amount"))
        if amount is None:
            return _fail(400, "Invalid amount", "amount must be a positive number of dollars, at most 6 decimals and at most "
                                                   "1,000,000,000")
        if body["toUsername"] == key.username:
            return _fail(400, "Cannot transfer to yourself", "toUsername matches your own username")
        try:
            sender, receiver = await gateway.store.transfer(key.account_id, body["toUsername"], amount,
                                                            new_request_id())
        except InsufficientBalance as short:
            return _fail(400, "Insufficient balance",
                         f"available ${format_usd(max(short.available, 0))}, asked ${format_usd(amount)}")
        except NotFound:
            return _fail(404, "User not found", f"no user {body['toUsername']!r}")
        except StoreUnavailable as exc:
            return error_response(errors.store_unavailable(exc.retry_after))
        except StoreError as exc:
            return _fail(400, "Invalid request", str(exc))
        return Response(json.dumps({
            "success": True, "amount": usd_number(amount), "from": sender.username, "to": receiver.username,
            "senderNewBalance": usd_number(sender.balance), "receiverNewBalance": usd_number(receiver.balance),
        }), content_type="application/json")
