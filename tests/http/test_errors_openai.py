"""Every error /v1/chat/completions can produce: status, OpenAI wire shape, the SDK's
exception class, no hold left open, nothing charged."""

import json

import openai
import pytest

from tests.conftest import http_client, sdk_http

OK = {"model": "claude-sonnet-4.5", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}


def body(**changes):
    out = {**OK, **changes}
    return {k: v for k, v in out.items() if v is not ...}


def sim(directive, **changes):
    return body(messages=[{"role": "user", "content": f"[sim {directive}]"}], **changes)


CASES = [
    ("missing key", None, OK, 401, openai.AuthenticationError),
    ("unknown key", "sk-cl-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", OK, 401, openai.AuthenticationError),
    ("revoked key", "revoked", OK, 401, openai.AuthenticationError),
    ("model not allowed", "haiku-only", OK, 403, openai.PermissionDeniedError),
    ("stream not allowed", "no-stream", body(stream=True), 403, openai.PermissionDeniedError),
    ("ip not allowed", "far-ip", OK, 403, openai.PermissionDeniedError),
    ("malformed json", "good", b"{", 400, openai.BadRequestError),
    ("non-utf8", "good", b'{"model": "\xff"}', 400, openai.BadRequestError),
    ("missing model", "good", body(model=...), 400, openai.BadRequestError),
    ("model not available", "good", body(model="gpt-4o"), 400, openai.BadRequestError),
    ("missing messages", "good", body(messages=...), 400, openai.BadRequestError),
    ("n greater than one", "good", body(n=2), 400, openai.BadRequestError),
    ("json_object", "good", body(response_format={"type": "json_object"}), 400, openai.BadRequestError),
    ("max_tokens zero", "good", body(max_tokens=0), 400, openai.BadRequestError),
    ("stream not boolean", "good", body(stream="yes"), 400, openai.BadRequestError),
    ("oversized body", "good", body(messages=[{"role": "user", "content": "x" * 300_000}]), 413,
     openai.APIStatusError),
    ("insufficient balance", "poor", OK, 402, openai.APIStatusError),
    ("upstream 429", "good", sim("fault=429 retry_after=3"), 429, openai.RateLimitError),
    ("upstream 529", "good", sim("fault=529"), 529, openai.InternalServerError),
    ("upstream 500", "good", sim("fault=500"), 500, openai.InternalServerError),
    ("upstream 429 streaming", "good", sim("fault=429", stream=True), 429, openai.RateLimitError),
    ("upstream timeout", "good", sim("fault=hang"), 504, openai.InternalServerError),
]
TYPES = {401: "authentication_error", 403: "permission_error", 400: "invalid_request_error",
         413: "invalid_request_error", 402: "insufficient_quota", 429: "rate_limit_error", 529: "overloaded_error",
         500: "api_error", 504: "timeout_error"}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_chat_error_status_shape_and_sdk_class(errors_gateway, case):
    running, keys = errors_gateway
    name, key_kind, payload, status, sdk_class = case
    headers = {"content-type": "application/json"}
    if key_kind is not None:
        headers["authorization"] = f"Bearer {keys.get(key_kind, key_kind)}"
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    async with http_client(running, timeout=10) as http:
        response = await http.post("/v1/chat/completions", content=content, headers=headers)
    assert response.status_code == status, response.text
    data = response.json()
    assert set(data) == {"error"} and set(data["error"]) == {"message", "type", "param", "code"}
    assert data["error"]["type"] == TYPES[status] and data["error"]["message"]
    if name == "model not available":
        assert data["error"] == {"message": 'Model "gpt-4o" is not available.', "type": "invalid_request_error",
                                 "param": "model", "code": 400}
    if name == "upstream 429":
        assert response.headers["retry-after"] == "3"
    for account in await running.gateway.store.list_users():
        assert account.held == 0 and account.balance in (10_000_000, 10)
    if isinstance(payload, dict) and key_kind is not None and not payload.get("stream") \
            and {"model", "messages"} <= set(payload):
        client = openai.AsyncOpenAI(api_key=keys.get(key_kind, key_kind), base_url=running.url + "/v1",
                                    max_retries=0, **sdk_http(running, openai))
        with pytest.raises(sdk_class) as raised:
            await client.chat.completions.create(**payload)
        assert raised.value.status_code == status


@pytest.mark.parametrize("fault,error_type", [("error_mid", "overloaded_error"), ("drop_mid", "api_error"),
                                              ("hang_mid", "timeout_error")])
async def test_chat_mid_stream_errors(errors_gateway, fault, error_type):
    running, keys = errors_gateway
    client = openai.AsyncOpenAI(api_key=keys["good"], base_url=running.url + "/v1", max_retries=0,
                                **sdk_http(running, openai))
    stream = await client.chat.completions.create(stream=True, **sim(f"deltas=10 fault={fault} fault_after=3"))
    texts = []
    with pytest.raises(openai.APIError) as raised:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                texts.append(chunk.choices[0].delta.content)
    assert len(texts) == (3 if fault != "hang_mid" else 0)
    assert error_type in str(raised.value.body) or error_type in str(raised.value)
