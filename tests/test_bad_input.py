"""Bad input never gets a 5xx or an empty body: 400 in the endpoint's own shape."""

import httpx
import pytest

DEEP = b'{"model":"claude-haiku-4.5","max_tokens":10,"messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
SURROGATE = (b'{"model":"claude-haiku-4.5","max_tokens":10,'
             b'"messages":[{"role":"user","content":"\\ud800 lone"}]}')
BAD_UTF8 = b'{"model":"claude-haiku-4.5","max_tokens":10,"messages":[{"role":"user","content":"\xff\xfe"}]}'
NAN = b'{"model":"claude-haiku-4.5","max_tokens":NaN,"messages":[{"role":"user","content":"x"}]}'
HUGE_INT = b'{"model":"claude-haiku-4.5","max_tokens":' + b"9" * 400 + b',"messages":[{"role":"user","content":"x"}]}'


@pytest.mark.parametrize("body", [DEEP, SURROGATE, BAD_UTF8, NAN, HUGE_INT], ids=["deep", "surrogate", "utf8",
                                                                               "nan", "huge-int"])
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions", "/v1/messages/count_tokens",
                                  "/api/user/transfer"])
async def test_hostile_json_is_a_400_in_the_endpoints_shape(alice, body, path):
    async with alice.http() as http:
        response = await http.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code in (400, 413), response.text
    payload = response.json()
    if path == "/api/user/transfer":
        assert payload["success"] is False
    elif path == "/v1/chat/completions":
        assert set(payload["error"]) == {"message", "type", "param", "code"}
    else:
        assert payload["type"] == "error" and payload["error"]["type"] in ("invalid_request_error",
                                                                          "request_too_large")
    account = await alice.account()
    assert account.held == 0 and account.balance == 10_000_000


async def test_health_never_shows_upstream_credentials(nursery, config):
    from dataclasses import replace

    from proxy.serve import serve

    upstream = replace(config.upstream, url=config.upstream.url.replace("http://", "http://admin:s3cret@")
                       + "/?token=hunter2#frag")
    running = await nursery.start(serve, replace(config, upstream=upstream))
    async with httpx.AsyncClient(base_url=running.url) as http:
        health = (await http.get("/health")).text
    assert "s3cret" not in health and "hunter2" not in health and "admin" not in health
    assert config.upstream.url.removeprefix("http://") in health
