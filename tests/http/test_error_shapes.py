"""Every error kind the gateway produces, pinned in all three wire shapes through the
one renderer per shape: Anthropic (JSON body, ``event: error``), OpenAI (JSON body,
``data:`` error chunk), the transfer API's own. The end-to-end status and type per
route are in tests/http/test_errors.py and tests/http/test_errors_openai.py; which shape a route
answers in is pinned at the end of this file."""

import json

import pytest
import trio

from proxy import errors
from proxy.adaptors.anthropic import AnthropicAdaptor
from proxy.adaptors.openai import OpenAIAdaptor
from proxy.errors import GatewayError
from proxy.http.api import transfer
from proxy.http import error_shapes
from proxy.upstream.status import upstream_error
from proxy.limits.keys import KeyLimits, Limiter
from storage.base import (AlreadyExists, AmountOutOfRange, InsufficientBalance, NotFound, SpendCapReached, StoreError,
                          StoreUnavailable)

from tests.conftest import http_client, make_account


def upstream(status: int, kind: str, message: str = "upstream says", headers=()) -> GatewayError:
    return upstream_error(status, json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode(),
                          headers)


def key_rate_limit() -> GatewayError:
    """The limiter's refusal of a key's second request in a minute (rpm 1)."""
    limiter = Limiter(lambda: 0.0, lambda: 1_800_000_000.0)

    async def twice() -> None:
        await limiter.admit(1, KeyLimits(rpm=1), 0)
        await limiter.admit(1, KeyLimits(rpm=1), 0)
    with pytest.raises(GatewayError) as refused:
        trio.run(twice)
    return refused.value


SPEND_CAP = SpendCapReached("daily", 5_000_000, 4_999_000, 2_000, 3600)
KEY_RATE_HEADERS = (("retry-after", "60"), ("anthropic-ratelimit-requests-limit", "1"),
                    ("anthropic-ratelimit-requests-remaining", "0"),
                    ("anthropic-ratelimit-requests-reset", "2027-01-15T08:01:00Z"))

# (kind, error, status, Anthropic type, OpenAI type, OpenAI param, OpenAI code, transfer word, headers)
KINDS = [
    ("invalid request", errors.invalid_request("max_tokens: Field required", "max_tokens"), 400,
     "invalid_request_error", "invalid_request_error", "max_tokens", "invalid_request_error", "Invalid request", ()),
    ("model not available (OpenAI wording)", GatewayError(400, 'Model "gpt-4o" is not available.', param="model",
                                                          code=400), 400,
     "invalid_request_error", "invalid_request_error", "model", 400, "Invalid request", ()),
    ("bad key", errors.authentication(), 401,
     "authentication_error", "authentication_error", None, "invalid_api_key", "Unauthorized", ()),
    ("insufficient balance", errors.billing("Insufficient balance"), 402,
     "billing_error", "insufficient_quota", None, "insufficient_balance", "Server error", ()),
    ("restricted key", errors.permission("model not allowed for this key"), 403,
     "permission_error", "permission_error", None, "permission_error", "Forbidden", ()),
    ("no route", errors.not_found("No route for GET /x"), 404,
     "not_found_error", "not_found_error", None, "not_found_error", "Not found", ()),
    ("unknown model", GatewayError(404, "model: x is not a model this gateway serves", code="model_not_found"), 404,
     "not_found_error", "not_found_error", None, "model_not_found", "Not found", ()),
    ("method not allowed", GatewayError(405, "Method DELETE is not allowed on /v1/models", "invalid_request_error"),
     405, "invalid_request_error", "invalid_request_error", None, "invalid_request_error", "Method not allowed", ()),
    ("body too slow", GatewayError(408, "Request body not received in time", "timeout_error"), 408,
     "timeout_error", "timeout_error", None, "timeout_error", "Request timeout", ()),
    ("body too large", errors.too_large(65536), 413,
     "request_too_large", "invalid_request_error", None, "request_too_large", "Request too large", ()),
    ("upstream rate limit", upstream(429, "rate_limit_error", headers=(("retry-after", "7"), ("x-other", "no"))), 429,
     "rate_limit_error", "rate_limit_error", None, "rate_limit_error", "Rate limited", (("retry-after", "7"),)),
    ("key rate limit", key_rate_limit(), 429,
     "rate_limit_error", "rate_limit_error", None, "rate_limit_error", "Rate limited", KEY_RATE_HEADERS),
    ("key spend cap", errors.spend_cap(SPEND_CAP), 429,
     "rate_limit_error", "rate_limit_error", None, "rate_limit_error", "Rate limited", (("retry-after", "3600"),)),
    ("internal error", GatewayError(500, "Internal error; the request was not applied"), 500,
     "api_error", "api_error", None, "api_error", "Server error", ()),
    ("upstream 500", upstream(500, "whatever_error"), 500,
     "api_error", "api_error", None, "api_error", "Server error", ()),
    ("upstream unreachable", errors.upstream_unreachable("connection refused"), 502,
     "api_error", "api_error", None, "api_error", "Server error", ()),
    ("upstream refused our credentials", upstream(401, "authentication_error"), 502,
     "api_error", "api_error", None, "api_error", "Server error", ()),
    ("ledger unavailable", errors.store_unavailable(3), 503,
     "api_error", "api_error", None, "api_error", "Service unavailable", (("retry-after", "3"),)),
    ("upstream timeout", errors.upstream_timeout("stream"), 504,
     "timeout_error", "timeout_error", None, "timeout_error", "Server error", ()),
    ("upstream overloaded", upstream(529, "overloaded_error", "Overloaded"), 529,
     "overloaded_error", "overloaded_error", None, "overloaded_error", "Server error", ()),
    ("upstream's own type kept", upstream(400, "invalid_request_error"), 400,
     "invalid_request_error", "invalid_request_error", None, "invalid_request_error", "Invalid request", ()),
    ("a 4xx without a type of its own", GatewayError(418, "teapot"), 418,
     "invalid_request_error", "invalid_request_error", None, "invalid_request_error", "Server error", ()),
    ("transfer refusal", transfer.Refused(400, "Invalid amount", "amount must be positive"), 400,
     "invalid_request_error", "invalid_request_error", None, "invalid_request_error", "Invalid amount", ()),
    ("transfer rate limit", GatewayError(429, "too many transfers; retry in 2 s", headers=(("retry-after", "2"),)),
     429, "rate_limit_error", "rate_limit_error", None, "rate_limit_error", "Rate limited", (("retry-after", "2"),)),
]


@pytest.mark.parametrize("kind", KINDS, ids=[k[0] for k in KINDS])
def test_each_error_kind_in_each_shape(kind):
    name, error, status, a_type, o_type, param, code, word, headers = kind
    message = error.message
    assert error.status == status and error.headers == headers
    assert error_shapes.anthropic(error, "req_1") == {
        "type": "error", "error": {"type": a_type, "message": message}, "request_id": "req_1"}
    assert error.anthropic_sse("req_1") == (
        b'event: error\ndata: {"type": "error", "error": {"type": "%s", "message": %s}}\n\n'
        % (a_type.encode(), json.dumps(message).encode()))
    assert error_shapes.openai(error, "req_1") == {
        "error": {"message": message, "type": o_type, "param": param, "code": code}}
    assert error.openai_sse() == b"data: " + json.dumps(
        {"error": {"message": message, "type": o_type, "param": None, "code": code}},
        ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
    assert transfer.error_body(error, "req_1") == {"success": False, "error": word, "message": message}


@pytest.mark.parametrize("kind", KINDS, ids=[k[0] for k in KINDS])
def test_the_adaptors_render_through_the_same_functions(kind):
    error = kind[1]
    assert AnthropicAdaptor().error_body(error, "req_1") == error_shapes.anthropic(error, "req_1")
    assert AnthropicAdaptor().error_event(error, "req_1") == error.anthropic_sse("req_1")
    assert OpenAIAdaptor().error_body(error, "req_1") == error_shapes.openai(error, "req_1")
    assert OpenAIAdaptor().error_event(error, "req_1") == error.openai_sse()


def test_one_wire_form_pinned_byte_for_byte():
    error = errors.too_large(65536)
    assert error.anthropic_sse("req_1") == (b'event: error\ndata: {"type": "error", "error": {"type": '
                                            b'"request_too_large", "message": "Request body exceeds the 65536-byte '
                                            b'limit"}}\n\n')
    assert error.openai_sse() == (b'data: {"error":{"message":"Request body exceeds the 65536-byte limit",'
                                  b'"type":"invalid_request_error","param":null,"code":"request_too_large"}}\n\n')


# (storage error, status, Anthropic type, retry-after)
STORAGE = [
    (StoreUnavailable("database is locked", retry_after=4), 503, "api_error", (("retry-after", "4"),)),
    (InsufficientBalance(available=-5, needed=2_500_000), 402, "billing_error", ()),
    (SPEND_CAP, 429, "rate_limit_error", (("retry-after", "3600"),)),
    (NotFound("user not found: bob"), 404, "not_found_error", ()),
    (AlreadyExists("user already exists: bob"), 409, "invalid_request_error", ()),
    (AmountOutOfRange("amount 0 micro-USD is out of range"), 400, "invalid_request_error", ()),
    (StoreError("Cannot transfer to yourself"), 400, "invalid_request_error", ()),
]


@pytest.mark.parametrize("exc,status,a_type,headers", STORAGE, ids=[type(s[0]).__name__ for s in STORAGE])
def test_the_one_storage_mapping(exc, status, a_type, headers):
    error = errors.from_store(exc)
    assert (error.status, error.error_type, error.headers) == (status, a_type, headers)
    assert error.message
    if isinstance(exc, InsufficientBalance):
        assert error.message == "Insufficient balance: $0.000000 is available, $2.500000 is needed"
    elif isinstance(exc, SpendCapReached):
        assert error.message == ("This API key's daily spend cap of $5.000000 is reached: $0.001000 is left today "
                                 "(UTC) and this request may cost up to $0.002000. Retry in 3600 s.")
    elif not isinstance(exc, StoreUnavailable):
        assert error.message == str(exc)


# Which shape a route answers in (Quart's own errors included).

async def test_the_transfer_path_answers_quarts_own_errors_in_its_shape(gateway):
    seller = await make_account(gateway, "seller")
    async with seller.http() as http:
        wrong_method = await http.get("/api/user/transfer", headers={"anthropic-version": "2023-06-01"})
        too_large = await http.post("/api/user/transfer", content=b"x" * 70_000)
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"success": False, "error": "Method not allowed",
                                   "message": "Method GET is not allowed on /api/user/transfer"}
    assert wrong_method.headers["request-id"].startswith("req_")
    assert too_large.status_code == 413 and too_large.json()["error"] == "Request too large"


async def test_storage_errors_in_a_blueprint_go_through_the_one_mapping(gateway, monkeypatch):
    seller = await make_account(gateway, "seller")
    await make_account(gateway, "buyer", credit_micro=0)
    store = gateway.gateway.store

    async def failing(exc, *args):
        raise exc

    async with seller.http() as http:
        for exc, status, word in [(StoreUnavailable("locked", retry_after=5), 503, "Service unavailable"),
                                  (AmountOutOfRange("balance out of range"), 400, "Invalid request")]:
            monkeypatch.setattr(store, "transfer", lambda *args, exc=exc: failing(exc))
            response = await http.post("/api/user/transfer", json={"toUsername": "buyer", "amount": 1})
            assert response.status_code == status
            assert response.json() == {"success": False, "error": word, "message": str(errors.from_store(exc))}
            assert response.headers.get("retry-after") == ("5" if status == 503 else None)
    assert response.content == json.dumps(response.json()).encode()  # json.dumps' spacing, as always


async def test_a_model_listing_answers_each_client_in_its_shape(gateway):
    async with http_client(gateway) as http:
        anthropic_client = await http.get("/v1/models?limit=x", headers={"anthropic-version": "2023-06-01"})
        openai_client = await http.get("/v1/models?limit=x")
    assert anthropic_client.status_code == openai_client.status_code == 400
    assert anthropic_client.json() == {"type": "error", "request_id": anthropic_client.headers["request-id"],
                                       "error": {"type": "invalid_request_error",
                                                 "message": "limit: Input should be a valid integer"}}
    assert openai_client.json() == {"error": {"message": "limit: Input should be a valid integer",
                                              "type": "invalid_request_error", "param": "limit",
                                              "code": "invalid_request_error"}}
