"""The gateway's error tree and its renderings in both wire shapes.

Every error the gateway produces is a ``GatewayError``; adaptors render it as
Anthropic JSON, OpenAI JSON, or an SSE error event. One table maps each kind to
its HTTP status and both wire ``type`` strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# status -> Anthropic error.type (protocol.md section 1)
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# status -> OpenAI error.type
OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
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

    def anthropic_body(self, request_id: str) -> dict:
        return {
            "type": "error",
            "error": {"type": self.error_type, "message": self.message},
            "request_id": request_id,
        }

    def openai_body(self) -> dict:
        # A type that is just the status's default maps to OpenAI's word for that
        # status; a specific upstream type (e.g. overloaded_error) is kept as is.
        default = self.error_type == anthropic_type_for(self.status)
        openai_type = OPENAI_TYPES.get(self.status, self.error_type) if default else self.error_type
        return {
            "error": {
                "message": self.message,
                "type": openai_type,
                "param": self.param,
                "code": self.code if self.code is not None else self.error_type,
            }
        }

    def anthropic_sse(self, request_id: str) -> bytes:
        """The mid-stream form: ``event: error``."""
        body = {"type": "error", "error": {"type": self.error_type, "message": self.message}}
        return b"event: error\ndata: " + json.dumps(body).encode() + b"\n\n"


def anthropic_type_for(status: int) -> str:
    if status in ANTHROPIC_TYPES:
        return ANTHROPIC_TYPES[status]
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
