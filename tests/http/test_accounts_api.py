"""The self-serve JSON API through the Quart app in-process (ASGITransport): signup, login, keys, usage, ledger, codes,
transfer by session, admin, and every refusal (CSRF, throttles, disabled, expired)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from decimal import Decimal

import anthropic
import pytest
import trio

from proxy.config import AccountsConfig
from proxy.payments.providers import SignedWebhook

from tests.conftest import (FAST_HASH, MESSAGE, PASSWORD, browser, code_worth, http_client, in_process_config,
                            library, make_account, sdk_http, serve_in_process, signed_up)

pytestmark = pytest.mark.both_stores  # the ledger fixture: SQLite and PostgreSQL

async def start(nursery, ledger, **accounts):
    settings = AccountsConfig(**{**FAST_HASH, **accounts})
    return await nursery.start(serve_in_process, replace(in_process_config(ledger), accounts=settings))


async def test_the_self_serve_journey(site):
    async with browser(site) as web:
        signup = await web.post("/api/auth/signup", json={"username": "dana", "password": PASSWORD,
                                                          "email": "dana@example.com"})
        assert signup.status_code == 201
        cookie = signup.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie  # (plain http)
        assert signup.json()["balance_usd"] == "0.000000" and signup.json()["role"] == "user"
        assert (await web.post("/api/auth/logout")).status_code == 200
        assert (await web.get("/api/me")).status_code == 401
        login = await web.post("/api/auth/login", json={"username": "dana", "password": PASSWORD})
        assert login.status_code == 200 and login.headers["set-cookie"] != cookie  # a new session id

        redeemed = await web.post("/api/topup/redeem", json={"code": await code_worth(site, "1")})
        assert redeemed.json() == {"success": True, "paid_usd": "1.000000", "credited_usd": "30.000000",
                                   "balance_usd": "30.000000"}
        made = await web.post("/api/keys", json={"name": "laptop", "models": ["claude-sonnet-4.5"],
                                                 "stream": False, "ips": ["127.0.0.0/8"]})
        assert made.status_code == 201
        key, prefix = made.json()["key"], made.json()["prefix"]
        assert key.startswith(prefix) and made.json()["models"] == ["claude-sonnet-4.5"]
        assert [k["prefix"] for k in (await web.get("/api/keys")).json()["data"]] == [prefix]
        assert "key" not in (await web.get("/api/keys")).json()["data"][0]

        sdk = anthropic.AsyncAnthropic(api_key=key, base_url=site.url, max_retries=0, **sdk_http(site))
        answer = await sdk.messages.create(model="claude-sonnet-4.5", max_tokens=50, messages=MESSAGE)
        assert answer.usage.output_tokens > 0
        with pytest.raises(anthropic.PermissionDeniedError):  # the key's model allowlist
            await sdk.messages.create(model="claude-haiku-4.5", max_tokens=50, messages=MESSAGE)

        usage = (await web.get("/api/usage")).json()["data"]
        assert [(u["key"], u["model"], u["status"]) for u in usage] == [(prefix, "claude-sonnet-4.5", 200)]
        ledger = (await web.get("/api/ledger")).json()["data"]
        assert [e["kind"] for e in ledger] == ["charge", "redeem"]
        assert ledger[0]["amount_usd"] == "-" + usage[0]["cost_usd"] and ledger[1]["paid_usd"] == "1.000000"
        me = (await web.get("/api/me")).json()
        assert me["paid_usd_total"] == "1.000000" and me["balance_usd"] == ledger[0]["balance_after_usd"]
        csv = await web.get("/api/usage.csv")
        assert csv.headers["content-type"].startswith("text/csv") and csv.text.count("\n") == 2

        assert (await web.delete(f"/api/keys/{prefix}")).json()["revoked_at"]
        with pytest.raises(anthropic.AuthenticationError):  # at once on the gateway that revoked it
            await sdk.messages.create(model="claude-sonnet-4.5", max_tokens=50, messages=MESSAGE)
        assert (await web.delete("/api/keys/sk-cl-notmine1")).status_code == 404


async def test_the_api_takes_a_key_instead_of_the_cookie(site):
    alice = await make_account(site, "alice")
    async with alice.http() as http:
        me = await http.get("/api/me", headers={"origin": "https://evil.example"})
        made = await http.post("/api/keys", json={"name": "ci"}, headers={"origin": "https://evil.example"})
    assert me.json()["username"] == "alice" and me.json()["balance_usd"] == "10.000000"
    assert made.status_code == 201  # a key is not a cookie: no cross-site refusal


async def test_bad_input_is_a_clear_400_in_the_anthropic_shape(site):
    async with browser(site) as web:
        for body, status, words in (
            ({"username": "bad name!", "password": PASSWORD}, 400, "invalid username"),
            ({"username": "ok", "password": "short"}, 400, "8 to 1024"),
            ({"username": "ok", "password": PASSWORD, "email": "nope"}, 400, "email"),
            ({"password": PASSWORD}, 400, "username"),
            ([1, 2], 400, "JSON object"),
        ):
            response = await web.post("/api/auth/signup", json=body)
            assert response.status_code == status and words in response.json()["error"]["message"], response.text
            assert response.json()["type"] == "error" and response.json()["error"]["type"] == "invalid_request_error"
        async with signed_up(site, "taken"):
            pass
        assert (await web.post("/api/auth/signup", json={"username": "taken", "password": PASSWORD})).status_code == 409
        raw = await web.post("/api/auth/login", content=b"{nope", headers={"content-type": "application/json"})
        assert raw.status_code == 400
    async with signed_up(site, "keys") as web:
        for body, param in (({"models": ["gpt-9"]}, None), ({"models": "all"}, "models"), ({"ips": ["x"]}, None),
                            ({"stream": "yes"}, "stream"), ({"name": ""}, "name"),
                            ({"expires_at": "2001-01-01"}, None), ({"expires_at": "soon"}, None),
                            ({"expires_at": "9999-12-31"}, None), ({"models": []}, None)):
            response = await web.post("/api/keys", json=body)
            assert response.status_code == 400, (body, response.text)
        for query in ("limit=0", "limit=x", "limit=501", "before=" + "x" * 200):
            assert (await web.get(f"/api/usage?{query}")).status_code == 400
        assert (await web.get("/api/ledger?before=-1")).status_code == 400
        assert (await web.get("/api/keys")).json()["data"] == []


async def test_redeem_codes_once_with_clear_refusals(site):
    async with signed_up(site, "erin") as web:
        code = await code_worth(site, "2")
        expiring = await code_worth(site, "2", expires_at=time.time() + 0.3)
        ok, again = [await web.post("/api/topup/redeem", json={"code": code}) for _ in range(2)]
        assert ok.status_code == 200 and ok.json()["credited_usd"] == "60.000000"
        assert again.status_code == 400 and "already been redeemed" in again.json()["error"]["message"]
        for wrong_code in ("not-a-real-code-at-all", "", None, 12, "x" * 500):
            wrong = await web.post("/api/topup/redeem", json={"code": wrong_code})
            assert wrong.status_code == 400 and "not valid" in wrong.json()["error"]["message"]
        await trio.sleep(0.4)
        late = await web.post("/api/topup/redeem", json={"code": expiring})
        assert late.status_code == 400 and "expired" in late.json()["error"]["message"]
        assert (await web.get("/api/me")).json()["balance_usd"] == "60.000000"


async def test_the_same_code_redeemed_twice_at_once_credits_once(site):
    code = await code_worth(site, "5")
    statuses = []

    async def redeem(web):
        statuses.append((await web.post("/api/topup/redeem", json={"code": code})).status_code)

    async with signed_up(site, "fay") as one, signed_up(site, "gus") as two:
        async with trio.open_nursery() as nursery:
            for web in (one, two, one, two):
                nursery.start_soon(redeem, web)
    assert sorted(statuses) == [200, 400, 400, 400]
    store = site.gateway.store
    assert (await store.get_account("fay")).balance + (await store.get_account("gus")).balance == 150_000_000
    assert await store.check() == []


async def test_redeem_attempts_are_throttled(nursery, ledger):
    running = await start(nursery, ledger, redeem_failures_per_user=3)
    code = await code_worth(running, "1")
    async with signed_up(running, "hal") as web:
        statuses = [(await web.post("/api/topup/redeem", json={"code": f"guess-{i}"})).status_code for i in range(3)]
        limited = await web.post("/api/topup/redeem", json={"code": code})  # even the right one, for now
    assert statuses == [400] * 3 and limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert (await running.gateway.store.get_account("hal")).balance == 0


async def test_transfer_by_session(site):
    await make_account(site, "client", credit_micro=0)
    async with signed_up(site, "reseller") as web:
        await web.post("/api/topup/redeem", json={"code": await code_worth(site, "10")})
        moved = await web.post("/api/user/transfer", json={"toUsername": "client", "amount": 100})
        assert moved.status_code == 200 and moved.json()["senderNewBalance"] == 200
        forged = await web.post("/api/user/transfer", json={"toUsername": "client", "amount": 1},
                                headers={"origin": "https://evil.example"})
        assert forged.status_code == 403 and forged.json()["success"] is False  # (the transfer API's shape)
    async with http_client(site) as anonymous:
        nobody = await anonymous.post("/api/user/transfer", json={"toUsername": "client", "amount": 1})
    assert nobody.status_code == 401 and nobody.json()["error"] == "Unauthorized"
    assert (await site.gateway.store.get_account("client")).balance == 100_000_000


async def test_admin_credit_disable_and_listings(site):
    await library(site).create_user("root", PASSWORD, role="admin")
    async with signed_up(site, "ivy") as user, browser(site) as admin:
        await admin.post("/api/auth/login", json={"username": "root", "password": PASSWORD})
        for method, path in (("GET", "/api/admin/users"), ("GET", "/api/admin/usage"),
                             ("POST", "/api/admin/users/ivy/credit"), ("POST", "/api/admin/users/ivy/disable")):
            refused = await user.request(method, path, json={} if method == "POST" else None)
            assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error", path
        credited = await admin.post("/api/admin/users/ivy/credit",
                                    json={"amount_usd": 12.5, "paid_usd": "0.5", "reason": "refund  #42"})
        assert credited.status_code == 200 and credited.json()["balance_usd"] == "12.500000"
        entry = (await user.get("/api/ledger")).json()["data"][0]
        assert (entry["kind"], entry["amount_usd"], entry["paid_usd"], entry["reason"], entry["actor"]) == (
            "credit", "12.500000", "0.500000", "refund #42", "web:root")
        corrected = await admin.post("/api/admin/users/ivy/credit", json={"amount_usd": "-2.5", "reason": "dup"})
        assert corrected.status_code == 200 and corrected.json()["balance_usd"] == "10.000000"
        entry = (await user.get("/api/ledger")).json()["data"][0]
        assert (entry["kind"], entry["amount_usd"], entry["reason"], entry["actor"]) == (
            "correction", "-2.500000", "dup", "web:root")
        below = await admin.post("/api/admin/users/ivy/credit", json={"amount_usd": -10.5, "reason": "x"})
        assert below.status_code == 400 and "below zero" in below.json()["error"]["message"]
        for body in ({"amount_usd": 0, "reason": "x"}, {"amount_usd": 1}, {"amount_usd": 1, "reason": " "},
                     {"amount_usd": "-1", "paid_usd": 1, "reason": "x"}):
            assert (await admin.post("/api/admin/users/ivy/credit", json=body)).status_code == 400, body
        assert (await admin.post("/api/admin/users/nobody/credit",
                                 json={"amount_usd": 1, "reason": "x"})).status_code == 404
        users = {u["username"]: u for u in (await admin.get("/api/admin/users")).json()["data"]}
        assert users["ivy"]["balance_usd"] == "10.000000" and users["root"]["role"] == "admin"
        assert (await admin.get("/api/admin/usage")).json() == {"data": [], "next_before": None}


async def test_a_disabled_users_keys_and_sessions_stop(site):
    await library(site).create_user("root", PASSWORD, role="admin")
    jay = await make_account(site, "jay")
    await library(site).set_password("jay", PASSWORD)
    async with browser(site) as admin, browser(site) as web:
        await admin.post("/api/auth/login", json={"username": "root", "password": PASSWORD})
        await web.post("/api/auth/login", json={"username": "jay", "password": PASSWORD})
        async with jay.http() as http:
            assert (await http.get("/v1/models")).status_code == 200
            off = await admin.post("/api/admin/users/jay/disable", json={})
            assert off.json() == {"username": "jay", "disabled": True}
            refused = await http.post("/v1/messages", json={"model": "claude-sonnet-4.5", "max_tokens": 5,
                                                            "messages": MESSAGE})
            assert refused.status_code == 403 and "disabled" in refused.json()["error"]["message"]
            assert (await http.post("/v1/chat/completions", json={})).json()["error"]["type"] == "permission_error"
        assert (await web.get("/api/me")).status_code == 401  # the session ended
        login = await web.post("/api/auth/login", json={"username": "jay", "password": PASSWORD})
        assert login.status_code == 403 and "disabled" in login.json()["error"]["message"]
        await admin.post("/api/admin/users/jay/disable", json={"disabled": False})
        async with jay.http() as http:
            assert (await http.get("/v1/models")).status_code == 200


async def test_a_key_disabled_from_another_process_stops_within_the_cache_time(nursery, ledger):
    running = await nursery.start(serve_in_process, replace(in_process_config(ledger), key_cache_seconds=0.2,
                                                 accounts=AccountsConfig(**FAST_HASH)))
    kim = await make_account(running, "kim")
    async with kim.http() as http:
        assert (await http.get("/v1/models")).status_code == 200
        await running.gateway.store.set_disabled("kim", True)  # (as `cheaplm user disable` does)
        await trio.sleep(0.3)
        assert (await http.get("/v1/models")).status_code == 403


async def test_an_expired_key_is_refused(site):
    async with signed_up(site, "lee") as web:
        soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        made = (await web.post("/api/keys", json={"name": "temp", "expires_at": soon})).json()
        assert made["expires_at"] == soon.replace("Z", "+00:00")
        async with http_client(site, headers={"x-api-key": made["key"]}) as http:
            assert (await http.get("/v1/models")).status_code == 200
            await site.gateway.store.set_key_expiry(made["prefix"], time.time() - 1)
            site.gateway.keys.forget(made["prefix"])
            expired = await http.post("/v1/messages", json={"model": "claude-sonnet-4.5", "max_tokens": 5,
                                                            "messages": MESSAGE})
        assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]


async def test_cross_site_changes_by_cookie_are_refused(site):
    async with signed_up(site, "max") as web:
        for headers in ({"origin": "https://evil.example"}, {"origin": "null"}, {"sec-fetch-site": "cross-site"},
                        {"sec-fetch-site": "same-site"}):
            refused = await web.post("/api/keys", json={"name": "x"}, headers=headers)
            assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error", headers
        form = await web.post("/api/keys", content=b"name=x", headers={"content-type": "application/x-www-form-urlencoded"})
        assert form.status_code == 403
        forged_login = await web.post("/api/auth/login", json={"username": "max", "password": PASSWORD},
                                      headers={"origin": "https://evil.example"})
        assert forged_login.status_code == 403
        assert (await web.get("/api/keys")).json()["data"] == []  # nothing was made
        assert (await web.get("/api/me", headers={"origin": "https://evil.example"})).status_code == 200  # a read
        same = await web.post("/api/keys", json={"name": "x"}, headers={"sec-fetch-site": "same-origin"})
        assert same.status_code == 201


async def test_signups_are_throttled_per_address(nursery, ledger):
    running = await start(nursery, ledger, signups_per_hour=2)
    async with browser(running) as web:
        statuses = [(await web.post("/api/auth/signup", json={"username": f"u{i}", "password": PASSWORD})
                     ).status_code for i in range(3)]
        limited = await web.post("/api/auth/signup", json={"username": "u9", "password": PASSWORD})
    assert statuses[:2] == [201, 201] and statuses[2] == 429 == limited.status_code
    assert int(limited.headers["retry-after"]) > 3000 and limited.json()["error"]["type"] == "rate_limit_error"


async def test_failed_logins_are_throttled_with_one_message(nursery, ledger):
    running = await start(nursery, ledger, login_failures_per_account=3, login_failures_per_ip=5)
    await library(running).create_user("nora", PASSWORD)
    async with browser(running) as web:
        async def login(username, password):
            return await web.post("/api/auth/login", json={"username": username, "password": password})

        wrong, unknown = await login("nora", "wrong password"), await login("nobody", "wrong password")
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"] == "Invalid username or password"
        assert (await login("nora", "wrong again")).status_code == 401  # this client's 2nd failure on nora:
        held = await login("nora", PASSWORD)                              # its next try waits (backoff)
        assert held.status_code == 429 and int(held.headers["retry-after"]) >= 1
        assert held.json()["error"]["type"] == "rate_limit_error"
        assert (await login("pat", "x" * 9)).status_code == 401
        assert (await login("quin", "x" * 9)).status_code == 401  # the 5th failure from this address
        assert (await login("rue", "x" * 9)).status_code == 429   # the address is held, whatever the account


async def test_password_change_ends_other_sessions(site):
    await library(site).create_user("pia", PASSWORD)
    async with browser(site) as one, browser(site) as two:
        for web in (one, two):
            await web.post("/api/auth/login", json={"username": "pia", "password": PASSWORD})
        wrong = await one.post("/api/auth/password", json={"current_password": "nope", "new_password": "n" * 10})
        assert wrong.status_code == 403
        changed = await one.post("/api/auth/password", json={"current_password": PASSWORD,
                                                             "new_password": "new password 1"})
        assert changed.status_code == 200
        assert (await one.get("/api/me")).status_code == 200  # this browser got a new session
        assert (await two.get("/api/me")).status_code == 401


async def test_usage_pages_and_filters(site):
    alice = await make_account(site, "alice")
    client = alice.anthropic()
    for model in ("claude-sonnet-4.5", "claude-haiku-4.5", "claude-sonnet-4.5"):
        await client.messages.create(model=model, max_tokens=20, messages=MESSAGE)
    await alice.settled(3)
    async with alice.http() as http:
        first = (await http.get("/api/usage?limit=2")).json()
        rest = (await http.get(f"/api/usage?limit=2&before={first['next_before']}")).json()
        haiku = (await http.get("/api/usage?model=claude-haiku-4.5")).json()["data"]
        by_key = (await http.get(f"/api/usage?key={alice.key[:14]}")).json()["data"]
    assert len(first["data"]) == 2 and len(rest["data"]) == 1 and rest["next_before"] is None
    assert {u["request_id"] for u in first["data"] + rest["data"]} == {u["request_id"] for u in by_key}
    assert [u["model"] for u in haiku] == ["claude-haiku-4.5"]


async def test_the_cookie_is_secure_behind_a_trusted_https_proxy(nursery, ledger, site):
    running = await nursery.start(serve_in_process, replace(in_process_config(ledger), trusted_proxies=("127.0.0.0/8",),
                                                 accounts=AccountsConfig(**FAST_HASH)))
    host = running.url.removeprefix("http://")
    behind = {"x-forwarded-proto": "https", "origin": f"https://{host}"}
    async with http_client(running, headers=behind) as proxied:
        signup = await proxied.post("/api/auth/signup", json={"username": "quinn", "password": PASSWORD})
        plain = await proxied.post("/api/auth/login", json={"username": "quinn", "password": PASSWORD},
                                   headers={"x-forwarded-proto": "http"})  # then https://... is another origin
    assert signup.status_code == 201 and "Secure" in signup.headers["set-cookie"]
    assert plain.status_code == 403
    async with http_client(site, headers={"x-forwarded-proto": "https"}) as untrusted:
        signup = await untrusted.post("/api/auth/signup", json={"username": "rae", "password": PASSWORD})
    assert signup.status_code == 201 and "Secure" not in signup.headers["set-cookie"]  # a header anyone can send


async def test_the_payment_webhook_credits_once_per_event(nursery, ledger, site):
    secret = "whsec-for-tests-0123456789"
    running = await start(nursery, ledger, webhook_secret=secret)
    await make_account(running, "sam", credit_micro=0)
    hook = SignedWebhook(running.gateway.store, secret.encode(), Decimal(30))
    body = json.dumps({"id": "evt_42", "username": "sam", "paid_usd": "2.5"}).encode()
    signed = {"signature": hook.sign(body, time.time()), "content-type": "application/json"}
    async with http_client(running) as provider:
        first, again = [await provider.post("/api/payments/webhook", content=body, headers=signed) for _ in range(2)]
        forged = await provider.post("/api/payments/webhook", content=body,
                                     headers={"signature": "t=1,v1=beef", "content-type": "application/json"})
        unknown = json.dumps({"id": "evt_43", "username": "nobody", "paid_usd": "1"}).encode()
        lost = await provider.post("/api/payments/webhook", content=unknown,
                                   headers={"signature": hook.sign(unknown, time.time())})
    assert first.json()["applied"] is True and again.json()["applied"] is False
    assert first.json()["credited_usd"] == "75.000000"
    assert forged.status_code == 401 and forged.json()["error"]["type"] == "authentication_error"
    assert lost.status_code == 404
    assert (await running.gateway.store.get_account("sam")).balance == 75_000_000
    async with http_client(site) as provider:  # no secret configured: no webhook
        assert (await provider.post("/api/payments/webhook", content=body, headers=signed)).status_code == 404


HOSTILE = [b"", b"null", b"[]", b'"x"', b"1e999999", b'{"username": {"a": 1}, "password": [1]}',
           b'{"code": "\\ud800"}', b'{"amount_usd": NaN, "reason": "x"}', b"[" * 5000 + b"]" * 5000,
           b'{"name": "k", "models": [null], "ips": [1], "expires_at": 1e308}', b'{"amount_usd": "1e400", "reason": 1}',
           b'{"username": "' + b"a" * 70_000 + b'"}', b'{"password": "' + b"p" * 2000 + b'", "username": "x"}',
           b'{"disabled": "no"}', b'{"current_password": null, "new_password": 5}', b"\xff\xfe{}"]
POSTS = ["/api/auth/signup", "/api/auth/login", "/api/auth/password", "/api/keys", "/api/topup/redeem",
         "/api/admin/users/victim/credit", "/api/admin/users/victim/disable", "/api/payments/webhook"]


async def test_hostile_bodies_are_never_a_5xx(site):
    await library(site).create_user("root", PASSWORD, role="admin")
    await library(site).create_user("victim")
    async with browser(site) as web:
        await web.post("/api/auth/login", json={"username": "root", "password": PASSWORD})
        for path in POSTS:
            for body in HOSTILE:
                response = await web.post(path, content=body, headers={"content-type": "application/json"})
                assert response.status_code < 500, (path, body[:40], response.text)
                if response.status_code >= 400:  # (unknown fields are ignored: a key with the defaults, say)
                    assert response.json()["type"] == "error", (path, body[:40], response.text)
        assert (await web.get("/api/me")).json()["balance_usd"] == "0.000000"
    assert await site.gateway.store.check() == []


async def test_free_tier_keys_have_a_request_rate_until_their_user_pays(nursery, ledger):
    running = await nursery.start(serve_in_process, replace(in_process_config(ledger), key_cache_seconds=0.05,
                                                 accounts=AccountsConfig(**FAST_HASH, free_tier_rpm=2)))
    free = await make_account(running, "tess")  # credited by the operator, never paid
    body = {"model": "claude-sonnet-4.5", "max_tokens": 5, "messages": MESSAGE}
    async with free.http() as http:
        statuses = [(await http.post("/v1/messages", json=body)).status_code for _ in range(3)]
        limited = await http.post("/v1/chat/completions", json=body)
        assert statuses == [200, 200, 429] and limited.status_code == 429
        assert limited.json()["error"]["type"] == "rate_limit_error" and int(limited.headers["retry-after"]) >= 1
        await library(running).redeem("tess", await code_worth(running, "1"), None)
        await trio.sleep(0.1)  # (the key cache)
        assert (await http.post("/v1/messages", json=body)).status_code == 200


async def test_a_restricted_key_cannot_mint_an_unrestricted_one(site):
    fenced = await make_account(site, "uma", models=["claude-haiku-4.5"])
    async with fenced.http() as http:
        refused = await http.post("/api/keys", json={"name": "wider"})
        assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"
        assert (await http.get("/api/keys")).status_code == 200  # reading is fine
    assert len(await site.gateway.store.list_keys("uma")) == 1
