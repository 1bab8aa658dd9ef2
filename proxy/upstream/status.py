"""What an upstream's non-200 answer means for our client: the one status -> error
mapping of the upstream edge (used for /v1/messages, /v1/chat/completions and
count_tokens alike), and which answers another channel could serve instead."""

from __future__ import annotations

import logging

import orjson

from .. import errors

log = logging.getLogger("cheaplm.upstream")

# Upstream response headers worth passing back to the client.
RETURNED_HEADERS = ("retry-after", "retry-after-ms", "x-should-retry")
# Answers that say nothing about the request itself: another channel may serve it
# (before the first byte has gone to the client; never after, never on a 400).
RETRYABLE = frozenset({429, 500, 502, 503, 504, 529})


def misanswered(status: int) -> bool:
    """A status other than 200 that is no error either (a 204, a redirect): the upstream
    failed to answer, as a 5xx does."""
    return status != 200 and status < 400
# The gateway's own upstream credential was refused: the channel is unusable.
CREDENTIAL_REFUSED = frozenset({401, 403})


def upstream_error(status: int, body: bytes, headers: tuple[tuple[str, str], ...]) -> errors.GatewayError:
    """An upstream non-200 answer as the error our client sees.

    The status and error type carry over (429 stays 429, 529 stays 529, other 5xx are
    ``api_error``), with the upstream's message and its retry headers. An upstream
    401/403 means the gateway's own credentials were refused: the client gets a 502,
    not a misleading 401 about a key it did not send.
    """
    if status in CREDENTIAL_REFUSED:
        log.error("upstream refused the gateway's credentials (HTTP %s)", status)
        return errors.GatewayError(502, "The gateway's upstream credentials were refused", "api_error")
    if status < 400:  # a 204, a redirect: no message, and not the client's status to pass on
        return errors.GatewayError(502, f"Upstream answered HTTP {status}, not a message", "api_error")
    kind, message = _error_fields(body)
    if status >= 500 and status != 529:
        kind = "api_error"
    passed = tuple((k, v) for k, v in headers if k.lower() in RETURNED_HEADERS)
    return errors.GatewayError(status, message or f"Upstream answered HTTP {status}", kind, headers=passed)


def _error_fields(body: bytes) -> tuple[str | None, str | None]:
    """(error.type, error.message) of an Anthropic error body, each None when absent."""
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None, None
    if not isinstance(error, dict):
        return None, None
    kind = error.get("type") if isinstance(error.get("type"), str) else None
    message = str(error["message"]) if error.get("message") else None
    return kind, message
