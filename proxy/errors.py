"""The gateway's error tree, the one status -> wire type table, the renderings of an
error in the Anthropic and OpenAI shapes, and the storage edge's error mapping.

Every error the gateway produces is a ``GatewayError``. Its Anthropic rendering
(JSON body, ``event: error``) and its OpenAI rendering (JSON body, ``data:`` error
chunk) are its four ``*_body``/``*_sse`` methods, and nothing else writes those
shapes. The transfer API's own shape is in proxy/http/transfer.py. Pure: imported
by the adaptors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .money import format_usd
from .protocol.stream_a2o import error_line
from storage.base import AlreadyExists, InsufficientBalance, NotFound, SpendCapReached, StoreError, StoreUnavailable

# status -> (Anthropic error.type (protocol.md section 1), OpenAI error.type)
TYPES = {
    400: ("invalid_request_error", "invalid_request_error"),
    401: ("authentication_error", "authentication_error"),
    402: ("billing_error", "insufficient_quota"),
    403: ("permission_error", "permission_error"),
    404: ("not_found_error", "not_found_error"),
    405: ("invalid_request_error", "invalid_request_error"),
    408: ("timeout_error", "timeout_error"),
    413: ("request_too_large", "invalid_request_error"),
    429: ("rate_limit_error", "rate_limit_error"),
    500: ("api_error", "api_error"),
    502: ("api_error", "api_error"),
    503: ("api_error", "api_error"),
    504: ("timeout_error", "timeout_error"),
    529: ("overloaded_error", "overloaded_error"),
}


@dataclass
class GatewayError(Exception):
    """An error with an HTTP status, an Anthropic ``type`` and a human message.

    ``error_type`` defaults from the status; ``param``/``code`` feed the OpenAI
    shape; ``headers`` are extra response headers (``retry-after`` from upstream).
    """

    status: int
    message: str
    error_type: str | None = None
    param: str | None = None
    code: str | int | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        super().__init__(self.message)
        if self.error_type is None:
            self.error_type = anthropic_type_for(self.status)

    # The Anthropic shape
    def anthropic_body(self, request_id: str) -> dict:
        return {
            "type": "error",
            "error": {"type": self.error_type, "message": self.message},
            "request_id": request_id,
        }

    def anthropic_sse(self, request_id: str) -> bytes:
        """The mid-stream form: ``event: error``."""
        body = {"type": "error", "error": {"type": self.error_type, "message": self.message}}
        return b"event: error\ndata: " + json.dumps(body).encode() + b"\n\n"

    # The OpenAI shape
    def openai_body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.openai_type(),
                "param": self.param,
                "code": self.code if self.code is not None else self.error_type,
            }
        }

    def openai_sse(self) -> bytes:
        """The mid-stream form: a ``data: {"error": ...}`` chunk (the SDK raises on it)."""
        error = self.openai_body()["error"]
        return error_line(error["type"], error["message"], error["code"])

    def openai_type(self) -> str:
        """A type that is just the status's default maps to OpenAI's word for that
        status; a specific upstream type (e.g. overloaded_error) is kept as is."""
        if self.error_type != anthropic_type_for(self.status) or self.status not in TYPES:
            return self.error_type
        return TYPES[self.status][1]


def anthropic_type_for(status: int) -> str:
    if status in TYPES:
        return TYPES[status][0]
    if status >= 500:
        return "api_error"
    return "invalid_request_error"


def invalid_request(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param)


def authentication(message: str = "Invalid API key") -> GatewayError:
    return GatewayError(401, message, code="invalid_api_key")


def permission(message: str) -> GatewayError:
    return GatewayError(403, message)


def not_found(message: str) -> GatewayError:
    return GatewayError(404, message)


def billing(message: str) -> GatewayError:
    return GatewayError(402, message, code="insufficient_balance")


def too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"Request body exceeds the {limit}-byte limit")


def upstream_timeout(what: str) -> GatewayError:
    return GatewayError(504, f"Upstream {what} timed out")


def upstream_unreachable(detail: str) -> GatewayError:
    return GatewayError(502, f"Upstream unreachable: {detail}", error_type="api_error")


def store_unavailable(retry_after: int) -> GatewayError:
    """The ledger is locked by another process, read-only or full: nothing was applied."""
    return GatewayError(503, f"The billing ledger is temporarily unavailable; nothing was charged. Retry in "
                             f"{retry_after} s.", "api_error", headers=(("retry-after", str(retry_after)),))


def spend_cap(exc: SpendCapReached) -> GatewayError:
    """A key's daily or monthly spend cap would be passed: 429 until the period rolls over."""
    period = {"daily": "today (UTC)", "monthly": "this month (UTC)"}.get(exc.period, exc.period)
    return GatewayError(
        429, f"This API key's {exc.period} spend cap of ${format_usd(exc.cap)} is reached: "
             f"${format_usd(exc.left)} is left {period} and this request may cost up to ${format_usd(exc.needed)}. "
             f"Retry in {exc.retry_after} s.", "rate_limit_error", headers=(("retry-after", str(exc.retry_after)),))


def from_store(exc: StoreError) -> GatewayError:
    """The storage edge's one mapping: a StoreError as the error a client sees. In
    every case nothing was applied. A caller with more to say about an expected outcome
    (a request's hold that the balance cannot cover, a transfer to an unknown user)
    catches that subclass itself and raises its own GatewayError; everything else
    comes here."""
    if isinstance(exc, StoreUnavailable):
        return store_unavailable(exc.retry_after)
    if isinstance(exc, SpendCapReached):
        return spend_cap(exc)
    if isinstance(exc, InsufficientBalance):
        return billing(f"Insufficient balance: ${format_usd(max(exc.available, 0))} is available, "
                       f"${format_usd(exc.needed)} is needed")
    if isinstance(exc, NotFound):
        return not_found(str(exc))
    if isinstance(exc, AlreadyExists):
        return GatewayError(409, str(exc))
    # AmountOutOfRange, or an operation the store refuses as asked
    return invalid_request(str(exc))
