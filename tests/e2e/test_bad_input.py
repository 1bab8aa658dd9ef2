"""Bad input never gets a 5xx or an empty body: 400 in the endpoint's own shape."""

import pytest

from tests.conftest import http_client

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
async def test_hostile_json_is_a_400_in_the_endpoints_shape(app_alice, body, path):
    alice = app_alice
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
    async with http_client(running) as http:
        health = (await http.get("/health")).text
    assert "s3cret" not in health and "hunter2" not in health and "admin" not in health
    assert config.upstream.url.removeprefix("http://") in health


async def test_a_ledger_locked_by_another_process_is_a_503_with_retry_after(nursery, config):
    """Another process (an admin's sqlite3 shell, a backup) holds the write lock: requests
    get 503 with retry-after in their endpoint's shape, nothing is applied, and all is
    well once the lock goes."""
    import sqlite3
    from dataclasses import replace

    from proxy.serve import serve

    from tests.conftest import make_account

    running = await nursery.start(serve, replace(config, store_busy_timeout=0.2, key_cache_seconds=60))
    account = await make_account(running, "locked")
    body = {"model": "claude-haiku-4.5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    async with account.http() as http:
        assert (await http.post("/v1/messages", json=body)).status_code == 200  # the key is cached now
        other = sqlite3.connect(config.database_url, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            anthropic_shape = await http.post("/v1/messages", json=body)
            openai_shape = await http.post("/v1/chat/completions", json=body)
            transfer = await http.post("/api/user/transfer", json={"toUsername": "x", "amount": 1})
        finally:
            other.execute("ROLLBACK")
            other.close()
        after = await http.post("/v1/messages", json=body)
    assert anthropic_shape.status_code == 503 and anthropic_shape.headers["retry-after"]
    assert anthropic_shape.json()["type"] == "error" and anthropic_shape.json()["error"]["type"] == "api_error"
    assert openai_shape.status_code == 503 and set(openai_shape.json()["error"]) == {"message", "type", "param",
                                                                                      "code"}
    assert transfer.status_code == 503 and transfer.json()["success"] is False
    assert after.status_code == 200
    final = await account.settled(2)
    assert final.held == 0 and len(await running.gateway.store.usage("locked", 10)) == 2
