"""The smaller items of issue 18, each with the request that showed it: transfers
limited per account whatever key sends them, JSON APIs that take a session's change only
as JSON, nosniff on every response, a redelivered payment webhook that does not echo
its own figures."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from decimal import Decimal

import httpx

from proxy.accounts.service import Accounts
from proxy.payments.providers import SignedWebhook
from proxy.serve import serve
from tests.conftest import MESSAGE, PASSWORD, browser, http_client, make_account, with_fast_hash


async def test_many_keys_do_not_multiply_the_rate_of_recipient_lookups(nursery, config):
    running = await nursery.start(serve, replace(config, transfers_per_minute=3))
    prober = await make_account(running, "prober", credit_micro=100_000_000)
    accounts = Accounts(running.gateway.store)
    keys = [prober.key] + [(await accounts.create_key(running.gateway.catalog, "prober", name=f"k{i}"))[0]
                           for i in range(5)]
    answers = []
    async with httpx.AsyncClient(base_url=running.url) as http:
        for i, key in enumerate(keys):
            answer = await http.post("/api/user/transfer", json={"toUsername": f"guess{i}", "amount": 1},
                                     headers={"x-api-key": key})
            answers.append(answer.status_code)
    assert answers == [404, 404, 404, 429, 429, 429]


async def test_a_session_posts_to_a_json_api_only_as_json(site):
    async with browser(site) as client:
        assert (await client.post("/api/auth/signup", json={"username": "fay", "password": PASSWORD})).status_code == 201
        for content_type in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"):
            refused = await client.post("/api/keys", content=b"", headers={"content-type": content_type})
            assert refused.status_code == 403 and "application/json" in refused.json()["error"]["message"]
        no_type = await client.post("/api/keys", content=b"")
        assert no_type.status_code == 403
        assert (await client.get("/api/keys")).json()["data"] == []  # no key was made
        made = await client.post("/api/keys", json={"name": "mine"})
        assert made.status_code == 201
        # A DELETE carries no body and needs no content type.
        gone = await client.delete(f"/api/keys/{made.json()['prefix']}")
        assert gone.status_code == 200


async def test_every_response_says_nosniff(site):
    user = await make_account(site, "nos")
    async with http_client(site) as http:
        answers = [await http.get("/nothing/<script>"), await http.get("/api/keys"), await http.get("/"),
                   await http.get("/dashboard"), await http.get("/static/style.css"),
                   await http.post("/v1/messages", json={}),
                   await http.post("/v1/messages", headers={"x-api-key": user.key},
                                   json={"model": "claude-haiku-4.5", "max_tokens": 5, "messages": MESSAGE}),
                   await http.post("/v1/messages", headers={"x-api-key": user.key},
                                   json={"model": "claude-haiku-4.5", "max_tokens": 5, "stream": True,
                                         "messages": MESSAGE})]
    assert [a.headers.get("x-content-type-options") for a in answers] == ["nosniff"] * len(answers)


async def test_a_redelivered_webhook_does_not_answer_with_its_own_figures(nursery, config):
    secret = "whsec-for-tests-0123456789"
    running = await nursery.start(serve, with_fast_hash(config, webhook_secret=secret))
    await make_account(running, "sam", credit_micro=0)
    await make_account(running, "eve", credit_micro=0)
    hook = SignedWebhook(running.gateway.store, secret.encode(), Decimal(30))

    def signed(event: dict) -> dict:
        body = json.dumps(event).encode()
        return {"content": body, "headers": {"signature": hook.sign(body, time.time())}}

    async with httpx.AsyncClient(base_url=running.url) as provider:
        first = await provider.post("/api/payments/webhook", **signed({"id": "evt_7", "username": "sam",
                                                                        "paid_usd": "2"}))
        other = await provider.post("/api/payments/webhook", **signed({"id": "evt_7", "username": "eve",
                                                                        "paid_usd": "500"}))
    assert first.json()["applied"] is True and first.json()["username"] == "sam"
    assert other.status_code == 200 and other.json()["applied"] is False
    assert set(other.json()) == {"success", "applied", "message"} and "500" not in other.text
    assert (await running.gateway.store.get_account("eve")).balance == 0
    assert (await running.gateway.store.get_account("sam")).balance == 60_000_000
