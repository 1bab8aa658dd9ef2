"""Hostile query strings, headers and form bodies, generated with Hypothesis, against
every route the app serves (issue 18): never a 5xx.

The routes are enumerated from the app itself (the relay's routes and every rule of
Quart's url_map, pages and static files included), so a route added later is covered
without a change here. Each example picks a route, fills its path parameters, and sends
it over real HTTP to the gateway (hypercorn, the simulator upstream) with hostile query
parameters (the names the routes read: limit, before, after_id, next, pay...; values
such as "²", "٣", 5000 digits, "-1", percent-encoded bytes that are no UTF-8), hostile
headers (a payment webhook ``signature`` with ``t=²`` or a 5000-digit ``t``, origins,
content types, forwarded headers, cookies) and a hostile form or raw body, as nobody,
as a user's key, as a user's session, or as an admin's key.

As in test_hostile_json.py, one gateway per test, and a plain ``@given`` function in a
worker thread (a synchronous httpx client against the gateway's port) so Hypothesis can
shrink a failure; ``derandomize=True``: the same examples on every run;
``CHEAPLM_HOSTILE_EXAMPLES=N`` multiplies the example count.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import replace
from urllib.parse import quote

import httpx
import orjson
import pytest
import trio
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from proxy.config import AccountsConfig
from proxy.http.app import create_app
from proxy.payments.providers import SignedWebhook
from proxy.serve import serve
from tests.conftest import make_account
from tests.conftest import FAST_HASH, PASSWORD, library

SECRET = "whsec-for-hostile-routes-0123"
SCALE = int(os.environ.get("CHEAPLM_HOSTILE_EXAMPLES", "1"))
SETTINGS = dict(deadline=None, database=None, derandomize=os.environ.get("CHEAPLM_HOSTILE_RANDOM") != "1",
                print_blob=False, suppress_health_check=list(HealthCheck))


def every_route(app) -> list[tuple[str, str]]:
    """(method, rule) of every route: the relay's, then Quart's url_map, all of it."""
    served = {("POST", path) for path in app.asgi_app.routes}
    for rule in app.url_map.iter_rules():
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((method, rule.rule))
    return sorted(served)


# -- hostile pieces ---------------------------------------------------------------------------

NUMBERS = ["²", "٣", "9" * 5000, "-1", "0", "1", "50", "1e3", " 5", "5 ", "0x10", "+1", "1.5", "-0",
           "9223372036854775808", "18446744073709551616", "４２", "Ⅻ", "", "\x00", "null", "NaN", "Infinity"]
TEXTS = ["/\t/evil.example", "//evil.example", "/\\evil", "https://evil.example", "x" * 5000, "'; DROP TABLE usage;--",
         "<script>alert(1)</script>", "\u202e", "\ufeff", "\x7f", "sk-cl-", "req_", "claude-haiku-4.5", "..", "%"]
RAW_ESCAPES = ["%ff%fe", "%ed%a0%80", "%c0%af", "%00", "%0a", "%0d%0a", "%e2%80%a8", "%", "%zz", "%2F%2F"]
PARAM_NAMES = ["limit", "before", "after_id", "before_id", "key", "model", "next", "pay", "changed", "format",
               "beta", "id", "page"]

values = st.one_of(st.sampled_from(NUMBERS), st.sampled_from(TEXTS), st.text(max_size=20),
                   st.integers(-2**70, 2**70).map(str))
query_pairs = st.lists(st.tuples(st.one_of(st.sampled_from(PARAM_NAMES), st.text(max_size=8)), values),
                       max_size=4)


def encode_query(pairs: list[tuple[str, str]], raw: list[str]) -> str:
    parts = [f"{quote(k, safe='', errors='surrogatepass')}={quote(v, safe='', errors='surrogatepass')}"
             for k, v in pairs]
    parts += [f"before={r}" for r in raw] if raw else []
    return "&".join(parts)


def latin1(text: str) -> bytes:
    """A header value as bytes (latin-1, as "²" arrives from a client), keeping what it
    can of ``text``; no line breaks (httpx would refuse them)."""
    return text.replace("\r", " ").replace("\n", " ").strip(" \t").encode("latin-1", "replace")


HEADER_VALUES = {
    "signature": st.one_of(st.sampled_from(["t=²", "t=" + "9" * 5000 + ",v1=00", "t=,v1=", "t=-5,v1=ab", "v1=",
                                             "t=１２,v1=ab", "=,=,", "t=1e9,v1=x", "t=99999999999999999999"]),
                           st.text(max_size=30).map(lambda t: "t=" + t)),
    "origin": st.sampled_from(["null", "https://evil.example", "http://127.0.0.1", "", "file://", "https://²"]),
    "content-type": st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain",
                                     "multipart/form-data; boundary=x", "application/json; charset=latin-1", "",
                                     "application/x-www-form-urlencoded; charset=utf-16", "*/*"]),
    "x-forwarded-for": st.sampled_from(["1.2.3.4", "not an address", "::1, 127.0.0.1", "", "²"]),
    "x-forwarded-host": st.sampled_from(["evil.example", "a" * 300, "", "[::1]:99999", "²"]),
    "x-forwarded-proto": st.sampled_from(["https", "http", "gopher", ""]),
    "sec-fetch-site": st.sampled_from(["cross-site", "same-origin", "none", "²"]),
    "accept": st.sampled_from(["text/html", "application/json", "*/*", "", "text/html;q=²"]),
    "anthropic-version": st.sampled_from(["2023-06-01", "", "²"]),
    "authorization": st.sampled_from(["Bearer ", "Bearer ²", "Basic Og==", "Bearer " + "x" * 5000]),
    "cookie": st.sampled_from(["cheaplm_session=²", "cheaplm_session=" + "a" * 5000, "=;=;", "cheaplm_session"]),
    "if-none-match": st.sampled_from(["*", "²"]),
    "range": st.sampled_from(["bytes=0-1", "bytes=²", "bytes=-" + "9" * 5000]),
}
headers = st.dictionaries(st.sampled_from(sorted(HEADER_VALUES)), st.just(None), max_size=4).flatmap(
    lambda chosen: st.fixed_dictionaries({name: HEADER_VALUES[name] for name in chosen}))
FORM_FIELDS = ["csrf", "username", "password", "new_password", "name", "code", "to", "amount", "usd", "reason",
               "models", "daily_usd", "prefix", "email", "note"]
form = st.dictionaries(st.sampled_from(FORM_FIELDS), values, max_size=4)
raw_bodies = st.sampled_from([b"", b"{}", b"[]", b"\xff\xfe", b'{"x":"\\ud800"}', b"a=%ff&b=%ed%a0%80", b"=&=&",
                              b"[" * 3000, b'{"username":"\\udfff","password":"x"}', b"null", b"\x00" * 10])


# -- the gateway ----------------------------------------------------------------------------------

@pytest.fixture
async def hostile_site(nursery, config):
    running = await nursery.start(serve, replace(config, accounts=AccountsConfig(**FAST_HASH, webhook_secret=SECRET),
                                                 transfers_per_minute=1_000_000))
    user = await make_account(running, "alice")
    accounts = library(running)
    await accounts.create_user("root", PASSWORD, role="admin")
    root = await make_account(running, "root2")  # a plain key of another account
    admin_key, _ = await accounts.create_key(running.gateway.catalog, "root", "ops")
    async with httpx.AsyncClient(base_url=running.url) as client:
        signup = await client.post("/api/auth/signup", json={"username": "bea", "password": PASSWORD},
                                   headers={"origin": running.url})
    assert signup.status_code == 201
    return running, {"nobody": {}, "key": {"x-api-key": user.key}, "other": {"x-api-key": root.key},
                     "admin": {"x-api-key": admin_key},
                     "session": {"cookie": f"cheaplm_session={signup.cookies['cheaplm_session']}",
                                 "origin": running.url}}


def fill(rule: str) -> st.SearchStrategy[str]:
    """``rule`` with each <param> replaced by hostile text (percent-encoded)."""
    names = re.findall(r"<[^>]+>", rule)
    if not names:
        return st.just(rule)
    pieces = st.one_of(st.sampled_from(TEXTS + NUMBERS + ["alice", "root", "style.css", "claude-haiku-4.5"]),
                       st.text(min_size=1, max_size=12), st.sampled_from(RAW_ESCAPES))

    def render(chosen: list[str]) -> str:
        path = rule
        for name, piece in zip(names, chosen):
            encoded = piece if piece in RAW_ESCAPES else quote(piece, safe="", errors="surrogatepass")
            path = path.replace(name, encoded or "x", 1)
        return path
    return st.lists(pieces, min_size=len(names), max_size=len(names)).map(render)


SWEEP_VALUES = ["²", "9" * 5000]
SWEEP_PARAMS = ["limit", "before", "after_id", "before_id", "key", "model", "next", "pay", "changed"]  # what routes read
# All headers at once; 5000 digits in two of them (hypercorn refuses a head over 16 KiB).
SWEEP_HEADERS = [{name: "²" for name in HEADER_VALUES},
                 {**{name: "9" * 300 for name in HEADER_VALUES}, "signature": "t=" + "9" * 5000 + ",v1=00",
                  "range": "bytes=-" + "9" * 5000}]


def caller_for(path: str) -> str:
    """Who reaches a route's parsing: an admin on admin routes, a browser's session on
    the dashboard's pages, else a key."""
    if path.startswith(("/api/admin", "/admin")):
        return "admin"
    return "session" if path.startswith(("/dashboard", "/logout", "/keys")) else "key"


def sweep(url: str, routes: list[tuple[str, str]], callers: dict) -> None:
    """Beside the random examples, every route once per (query parameter, hostile
    number) and once with every header hostile, each as the caller who gets furthest."""
    with httpx.Client(base_url=url, timeout=30) as client:
        for method, rule in routes:
            path = re.sub(r"<[^>]+>", "x", rule)
            who = callers[caller_for(path)]
            for name in SWEEP_PARAMS:
                for value in SWEEP_VALUES:
                    answer = client.request(method, f"{path}?{name}={quote(value, safe='')}", headers=who)
                    assert answer.status_code < 500, (method, path, name, value[:10], answer.status_code)
            for hostile in SWEEP_HEADERS:
                answer = client.request(method, path, headers={**{k: latin1(v) for k, v in hostile.items()}, **who},
                                        content=b"{}")
                assert answer.status_code < 500, (method, path, "headers", answer.status_code, answer.text[:200])


async def test_no_route_answers_a_5xx_to_hostile_queries_headers_and_forms(hostile_site):
    running, callers = hostile_site
    routes = every_route(create_app(running.gateway))
    assert len(routes) > 40 and ("GET", "/api/usage.csv") in routes and ("POST", "/logout") in routes
    seen: dict[int, int] = {}
    hook = SignedWebhook(running.gateway.store, SECRET.encode(), running.gateway.config.value_multiplier)

    @settings(max_examples=400 * SCALE, **SETTINGS)
    @given(route=st.sampled_from(routes).flatmap(lambda r: st.tuples(st.just(r[0]), fill(r[1]))),
           who=st.sampled_from(sorted(callers)), query=query_pairs, raw=st.lists(st.sampled_from(RAW_ESCAPES),
                                                                                  max_size=1),
           extra=headers, body=st.one_of(form, raw_bodies))
    def check(route, who, query, raw, extra, body):
        method, path = route
        target = path + ("?" + encode_query(query, raw) if query or raw else "")
        sent = {**callers[who], **{k: latin1(v) for k, v in extra.items()}}
        note(f"{method} {target!r} as {who} with {sent!r} body {body!r:.200}")
        request = client.build_request(method, target, headers=sent,
                                       **({"data": body} if isinstance(body, dict) else {"content": body}))
        answer = client.send(request)
        client.cookies.clear()  # each example as its caller says, not as a cookie set before
        seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
        assert answer.status_code < 500, (method, target, who, answer.status_code, answer.text[:300])

    started = trio.current_time()
    with httpx.Client(base_url=running.url, timeout=30) as client:
        await trio.to_thread.run_sync(check)
    print(f"examples: {trio.current_time() - started:.1f} s")
    print("statuses seen:", dict(sorted(seen.items())))

    await trio.to_thread.run_sync(sweep, running.url, routes, callers)

    # The reported cases, by name (each was a 500).
    async with httpx.AsyncClient(base_url=running.url, headers=callers["key"]) as client:
        for path in ("/api/usage", "/api/usage.csv", "/api/ledger"):
            for query in ("limit=²", "before=²", "before=" + "9" * 5000, "limit=" + "9" * 5000, "limit=٣"):
                answer = await client.get(f"{path}?{query}")
                assert answer.status_code in (200, 400), (path, query, answer.status_code)
        for query in ("limit=²", "before=²", "before=" + "9" * 5000):
            answer = await client.get(f"/api/admin/usage?{query}", headers=callers["admin"])
            assert answer.status_code in (200, 400), (query, answer.status_code)
        for signature in ("t=²,v1=00", "t=" + "9" * 5000 + ",v1=00"):
            answer = await client.post("/api/payments/webhook", content=b"{}",
                                       headers={"signature": latin1(signature)})
            assert answer.status_code == 401 and answer.json()["error"]["type"] == "authentication_error"
        surrogate = b'{"id":"evt_1","username":"\\ud800","paid_usd":"1.00"}'
        answer = await client.post("/api/payments/webhook", content=surrogate,
                                   headers={"signature": hook.sign(surrogate, time.time())})
        assert answer.status_code == 400, answer.text
        assert orjson.loads(answer.content)["type"] == "error"
