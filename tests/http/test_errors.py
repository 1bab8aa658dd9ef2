"""Every error the gateway can produce on /v1/messages: status, Anthropic wire shape,
no hold left open, nothing charged."""

from dataclasses import replace

import pytest
import trio

from proxy.config import UpstreamConfig
from proxy.serve import serve

from tests.conftest import UPSTREAM_KEY, http_client, make_account, sdk_http

OK_BODY = {"model": "claude-sonnet-4.5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


def body(**changes):
    out = {**OK_BODY, **changes}
    return {k: v for k, v in out.items() if v is not ...}


# (case id, key kind, request body (dict or raw bytes), extra headers, status, error type)
CASES = [
    ("missing key", None, OK_BODY, {}, 401, "authentication_error"),
    ("malformed key", "sk-wrong", OK_BODY, {}, 401, "authentication_error"),
    ("unknown key", "sk-cl-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", OK_BODY, {}, 401, "authentication_error"),
    ("revoked key", "revoked", OK_BODY, {}, 401, "authentication_error"),
    ("bearer revoked", "revoked-bearer", OK_BODY, {}, 401, "authentication_error"),
    ("model not allowed", "haiku-only", OK_BODY, {}, 403, "permission_error"),
    ("stream not allowed", "no-stream", body(stream=True), {}, 403, "permission_error"),
    ("ip not allowed", "far-ip", OK_BODY, {}, 403, "permission_error"),
    ("malformed json", "good", b'{"model": ', {}, 400, "invalid_request_error"),
    ("non-utf8", "good", b'{"model": "\xff\xfe"}', {}, 400, "invalid_request_error"),
    ("empty body", "good", b"", {}, 400, "invalid_request_error"),
    ("not an object", "good", b"[1, 2]", {}, 400, "invalid_request_error"),
    ("missing model", "good", body(model=...), {}, 400, "invalid_request_error"),
    ("model not a string", "good", body(model=7), {}, 400, "invalid_request_error"),
    ("missing messages", "good", body(messages=...), {}, 400, "invalid_request_error"),
    ("empty messages", "good", body(messages=[]), {}, 400, "invalid_request_error"),
    ("message without role", "good", body(messages=[{"content": "x"}]), {}, 400, "invalid_request_error"),
    ("missing max_tokens", "good", body(max_tokens=...), {}, 400, "invalid_request_error"),
    ("max_tokens string", "good", body(max_tokens="100"), {}, 400, "invalid_request_error"),
    ("max_tokens bool", "good", body(max_tokens=True), {}, 400, "invalid_request_error"),
    ("max_tokens zero", "good", body(max_tokens=0), {}, 400, "invalid_request_error"),
    ("max_tokens negative", "good", body(max_tokens=-5), {}, 400, "invalid_request_error"),
    ("stream not boolean", "good", body(stream="yes"), {}, 400, "invalid_request_error"),
    ("unknown model", "good", body(model="gpt-4o"), {}, 404, "not_found_error"),
    ("oversized body", "good", body(messages=[{"role": "user", "content": "x" * 300_000}]), {}, 413,
     "request_too_large"),
    ("insufficient balance", "poor", OK_BODY, {}, 402, "billing_error"),
    ("upstream 429", "good", body(messages=[{"role": "user", "content": "[sim fault=429 retry_after=7]"}]), {},
     429, "rate_limit_error"),
    ("upstream 529", "good", body(messages=[{"role": "user", "content": "[sim fault=529]"}]), {}, 529,
     "overloaded_error"),
    ("upstream 500", "good", body(messages=[{"role": "user", "content": "[sim fault=500]"}]), {}, 500, "api_error"),
    ("upstream 429 streaming", "good",
     body(stream=True, messages=[{"role": "user", "content": "[sim fault=429]"}]), {}, 429, "rate_limit_error"),
    ("upstream hang", "good", body(messages=[{"role": "user", "content": "[sim fault=hang]"}]), {}, 504,
     "timeout_error"),
    ("upstream hang streaming", "good", body(stream=True, messages=[{"role": "user", "content": "[sim fault=hang]"}]),
     {}, 504, "timeout_error"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_error_status_and_shape(errors_gateway, case):
    running, keys = errors_gateway
    name, key_kind, payload, extra, status, error_type = case
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01", **extra}
    if key_kind == "revoked-bearer":
        headers["authorization"] = f"Bearer {keys['revoked']}"
    elif key_kind is not None:
        headers["x-api-key"] = keys.get(key_kind, key_kind)
    content = payload if isinstance(payload, bytes) else __import__("json").dumps(payload).encode()
    async with http_client(running, timeout=10) as http:
        response = await http.post("/v1/messages", content=content, headers=headers)
    assert response.status_code == status, response.text
    data = response.json()
    assert set(data) == {"type", "error", "request_id"} and data["type"] == "error"
    assert data["error"]["type"] == error_type and set(data["error"]) == {"type", "message"}
    assert data["error"]["message"] and data["request_id"] == response.headers["request-id"]
    if name == "upstream 429":
        assert response.headers["retry-after"] == "7"
    for account in await running.gateway.store.list_users():
        assert account.held == 0
        assert account.balance in (10_000_000, 10)


async def test_forwarded_for_trusted_only_from_configured_proxies(errors_gateway):
    running, keys = errors_gateway
    ok = {**OK_BODY}
    async with http_client(running, timeout=10) as http:
        allowed = await http.post("/v1/messages", json=ok, headers={
            "x-api-key": keys["far-ip"], "x-forwarded-for": "198.51.100.1, 10.9.3.4"})
        assert allowed.status_code == 200, allowed.text
        v6 = await http.post("/v1/messages", json=ok, headers={
            "x-api-key": keys["far-ip"], "x-forwarded-for": "2001:db8::5"})
        assert v6.status_code == 200
        spoofed = await http.post("/v1/messages", json=ok, headers={
            "x-api-key": keys["far-ip"], "x-forwarded-for": "10.9.3.4, 198.51.100.1"})
        assert spoofed.status_code == 403


async def test_forwarded_for_ignored_from_untrusted_peer(app_gateway):
    account = await make_account(app_gateway, "ipuser", ips=["10.9.0.0/16"])
    async with account.http() as http:
        response = await http.post("/v1/messages", json=OK_BODY, headers={"x-forwarded-for": "10.9.3.4"})
    assert response.status_code == 403


async def test_upstream_unreachable_is_502(nursery, config):
    with trio.socket.socket() as sock:  # a port that was free a moment ago
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = replace(config, upstream=UpstreamConfig(url=f"http://127.0.0.1:{port}", api_key=UPSTREAM_KEY))
    running = await nursery.start(serve, cfg)
    account = await make_account(running, "lonely")
    async with account.http() as http:
        response = await http.post("/v1/messages", json=OK_BODY)
    assert response.status_code == 502 and response.json()["error"]["type"] == "api_error"
    assert (await account.account()).held == 0


async def test_upstream_refusing_gateway_credentials_is_not_a_client_401(nursery, config):
    cfg = replace(config, upstream=replace(config.upstream, api_key="sk-wrong-upstream-key"))
    running = await nursery.start(serve, cfg)
    account = await make_account(running, "victim")
    async with account.http() as http:
        response = await http.post("/v1/messages", json=OK_BODY)
    assert response.status_code == 502 and response.json()["error"]["type"] == "api_error"


async def test_idle_timeout_mid_stream_becomes_error_event(errors_gateway):
    running, keys = errors_gateway
    payload = body(stream=True, messages=[{"role": "user", "content": "[sim fault=hang_mid]"}])
    async with http_client(running, timeout=10) as http:
        response = await http.post("/v1/messages", json=payload, headers={"x-api-key": keys["good"]})
    assert response.status_code == 200
    assert "event: error" in response.text and "timeout_error" in response.text
    account = await running.gateway.store.get_account("good")
    with trio.fail_after(5):
        while account.held:
            await trio.sleep(0.01)
            account = await running.gateway.store.get_account("good")
    assert account.balance == 10_000_000  # no token was delivered


async def test_unknown_route_and_method(app_gateway):
    anthropic_headers = {"anthropic-version": "2023-06-01"}
    async with http_client(app_gateway) as http:
        missing = await http.post("/api/event_logging/batch", json={}, headers=anthropic_headers)
        bad_method = await http.delete("/v1/models", headers=anthropic_headers)
        openai_missing = await http.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    assert missing.json()["type"] == "error" and missing.headers["request-id"].startswith("req_")
    assert bad_method.status_code == 405 and bad_method.json()["type"] == "error"
    assert openai_missing.status_code == 404
    assert set(openai_missing.json()["error"]) == {"message", "type", "param", "code"}


async def test_shared_models_endpoint_answers_each_client_in_its_shape(app_gateway):
    gateway = app_gateway
    import anthropic
    import openai

    bad = "sk-cl-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
    with pytest.raises(anthropic.AuthenticationError) as a:
        await anthropic.AsyncAnthropic(api_key=bad, base_url=gateway.url, max_retries=0,
                                      **sdk_http(gateway)).models.list()
    assert a.value.body["type"] == "error" and a.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError) as o:
        await openai.AsyncOpenAI(api_key=bad, base_url=gateway.url + "/v1", max_retries=0,
                                **sdk_http(gateway, openai)).models.list()
    assert set(o.value.body) == {"message", "type", "param", "code"}
    async with http_client(gateway) as http:
        missing = await http.get("/v1/models/gpt-4o", headers={"anthropic-version": "2023-06-01"})
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
