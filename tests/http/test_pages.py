"""The dashboard pages through the Quart app in-process: each page for the right role, logins and
redirects, the CSRF token, the security headers, escaping, and every refusal shown on
the page (never a 5xx or a stack trace)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from proxy.http.pages import views as pages

from tests.conftest import MESSAGE, PASSWORD, code_worth, http_client, library
from tests.http.pages import HTML, csrf_of, member, post, web

pytestmark = pytest.mark.both_stores  # the ledger fixture: SQLite and PostgreSQL

USER_PAGES = ("/dashboard", "/dashboard/keys", "/dashboard/usage", "/dashboard/topup", "/dashboard/transfer",
              "/dashboard/settings")


def new_key_of(html: str) -> str:
    return re.search(r'data-testid="new-key">(sk-[^<]+)<', html).group(1)


def balance_of(html: str) -> str:
    return re.search(r'data-testid="balance">([-0-9.]+)<', html).group(1)


async def test_the_home_page_for_browsers_json_for_clients(site):
    async with http_client(site) as client:
        page = await client.get("/?pay=10", headers=HTML)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "claude-sonnet-4.5" in page.text and "Cache write 1h" in page.text
        assert 'data-testid="api-value">300.000000<' in page.text  # $10 x 30
        assert "$3.000000" in page.text and "buys $30 of API value" in page.text  # exact
        for accept in (None, "*/*", "application/json"):
            api = await client.get("/", headers={"accept": accept} if accept else {})
            assert api.json()["service"] == "CheapLM gateway"
        assert (await client.head("/")).headers["content-type"] == "application/json"
        bad = await client.get("/?pay=9999", headers=HTML)
        assert bad.status_code == 200 and "Pick an amount from $1 to $500" in bad.text
        assert (await client.get("/?pay=abc", headers=HTML)).status_code == 200
        css = await client.get("/static/style.css")
        js = await client.get("/static/app.js")
        assert css.status_code == js.status_code == 200 and "clipboard" in js.text


async def test_logged_out_pages_redirect_to_login(site):
    async with web(site) as client:
        for path in (*USER_PAGES, "/admin"):
            response = await client.get(path)
            assert response.status_code == 303
            assert response.headers["location"] == f"/login?next={path.replace('/', '%2F')}"
        for path in ("/signup", "/login"):
            assert (await client.get(path)).status_code == 200


async def test_every_page_renders_for_a_user_and_admin_is_403(site):
    async with member(site) as client:
        for path in USER_PAGES:
            response = await client.get(path)
            assert response.status_code == 200, path
            assert "Log out pat" in response.text and "Traceback" not in response.text
        assert 'data-testid="balance">0.000000<' in (await client.get("/dashboard")).text
        refused = await client.get("/admin")
        assert refused.status_code == 403 and "for admins" in refused.text
        assert refused.headers["content-type"].startswith("text/html")
        credit = await post(client, "/admin/credit", {"username": "pat", "amount": "5", "reason": "x"})
        assert credit.status_code == 403


async def test_security_headers_on_every_page(site):
    async with member(site) as client:
        for path in ("/", "/login", "/signup", *USER_PAGES, "/admin", "/static/app.js"):
            response = await client.get(path)
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
            assert response.headers["x-frame-options"] == "DENY" and response.headers["referrer-policy"]
            assert "<script>" not in response.text  # no inline script anywhere
        assert "content-security-policy" not in (await client.get("/api/me")).headers  # the API is JSON


async def test_the_csrf_token_is_required_and_checked(site):
    async with member(site) as client:
        for token in (None, "", "0" * 64):
            fields = {"name": "sneaky"} if token is None else {"csrf": token, "name": "sneaky"}
            refused = await client.post("/dashboard/keys", data=fields)
            assert refused.status_code == 403 and "expired or did not come from this site" in refused.text
        cross = await client.post("/dashboard/keys", data={"csrf": csrf_of((await client.get("/dashboard")).text),
                                                            "name": "x"}, headers={"origin": "https://evil.example"})
        assert cross.status_code == 403
        assert (await client.get("/api/keys")).json()["data"] == []  # nothing was made
        login = await client.post("/login", data={"username": "pat", "password": PASSWORD},
                                  headers={"sec-fetch-site": "cross-site"})
        assert login.status_code == 403


async def test_a_hostile_key_name_and_username_are_escaped(site):
    hostile = '<script>alert("x")</script>'
    async with member(site) as client:
        made = await post(client, "/dashboard/keys", {"name": hostile[:60]})
        assert made.status_code == 200 and "<script>alert" not in made.text and "&lt;script&gt;alert" in made.text
        async with web(site) as other:
            refused = await other.post("/signup", data={"username": hostile, "password": PASSWORD})
            assert refused.status_code == 400 and "<script>alert" not in refused.text
            assert "&lt;script&gt;" in refused.text


async def test_keys_created_shown_once_with_setup_and_revoked(site):
    async with member(site) as client:
        made = await post(client, "/dashboard/keys", {"name": "laptop", "models": "claude-sonnet-4.5", "ips": "127.0.0.0/8",
                                                      "stream": "off", "expires_at": "2099-01-01"})
        key = new_key_of(made.text)
        assert f'"ANTHROPIC_AUTH_TOKEN": "{key}"' in made.text and f'"ANTHROPIC_BASE_URL": "{site.url}"' in made.text
        assert f"apiBase: {site.url}/v1" in made.text and f'"baseURL": "{site.url}/v1"' in made.text  # Continue, OpenCode
        assert f'base_url = "{site.url}/v1"' in made.text and "model_context_window = 200000" in made.text  # Codex
        assert f"cline auth -p openai -k {key} -b {site.url}/v1" in made.text and "Cursor" in made.text
        listing = await client.get("/dashboard/keys")
        assert key not in listing.text and key[:14] in listing.text and "no streaming" in listing.text
        assert "valid until 2099-01-02 00:00 UTC" in listing.text  # through the day picked
        api = http_client(site, headers={"x-api-key": key})
        async with api:
            assert (await api.get("/api/me")).status_code == 200
            revoked = await post(client, "/dashboard/keys/revoke", {"prefix": key[:14]}, "/dashboard/keys")
            assert revoked.status_code == 200 and "revoked" in revoked.text
            assert (await api.get("/api/me")).status_code == 401
        for fields, words in (({"name": "x", "models": "gpt-9"}, "gpt-9"), ({"name": "x", "ips": "nope"}, "nope"),
                              ({"name": "x", "expires_at": "2001-01-01"}, "in the past"), ({"name": "y" * 65}, "name")):
            bad = await post(client, "/dashboard/keys", fields)
            assert bad.status_code == 400 and words in bad.text and 'data-testid="error"' in bad.text, fields
        assert (await post(client, "/dashboard/keys/revoke", {"prefix": "sk-cl-notmine1"})).status_code == 404


async def test_redeem_transfer_and_usage(site):
    code = await code_worth(site, "2")
    async with member(site) as client, member(site, "quinn"):
        redeemed = await post(client, "/dashboard/topup", {"code": code})
        assert redeemed.status_code == 200 and balance_of(redeemed.text) == "60.000000"
        again = await post(client, "/dashboard/topup", {"code": code})
        assert again.status_code == 400 and "already been redeemed" in again.text
        assert (await post(client, "/dashboard/topup", {"code": ""})).status_code == 400
        sent = await post(client, "/dashboard/transfer", {"toUsername": "quinn", "amount": "10.5"})
        assert sent.status_code == 200 and balance_of(sent.text) == "49.500000" and "to quinn" in sent.text
        for fields, status in (({"toUsername": "nobody", "amount": "1"}, 404), ({"toUsername": "quinn", "amount": "-1"}, 400),
                               ({"toUsername": "quinn", "amount": "1e9"}, 400),
                               ({"toUsername": "pat", "amount": "1"}, 400), ({"toUsername": "quinn", "amount": "99999"}, 400)):
            assert (await post(client, "/dashboard/transfer", fields)).status_code == status, fields

        key = new_key_of((await post(client, "/dashboard/keys", {"name": "k"})).text)
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
        async with http_client(site, headers=headers) as api:
            body = {"model": "claude-sonnet-4.5", "max_tokens": 20, "messages": MESSAGE}
            answer = await api.post("/v1/messages", json=body)
            assert answer.status_code == 200
        dashboard = await client.get("/dashboard")
        assert "claude-sonnet-4.5" in dashboard.text and "<rect" in dashboard.text
        usage = await client.get("/dashboard/usage", params={"model": "claude-sonnet-4.5", "key": key[:14]})
        assert usage.status_code == 200 and usage.text.count("<tr>") >= 2
        assert "/api/usage.csv?key=" in usage.text
        assert "No requests yet" in (await client.get("/dashboard/usage", params={"model": "claude-haiku-4.5"})).text
        assert (await client.get("/dashboard/usage", params={"before": "x" * 200})).status_code == 400


async def test_password_change_and_logout(site):
    async with member(site) as client:
        wrong = await post(client, "/dashboard/settings", {"password": "not it at all", "new_password": "another one!"})
        assert wrong.status_code == 403 and "not right" in wrong.text
        short = await post(client, "/dashboard/settings", {"password": PASSWORD, "new_password": "short"})
        assert short.status_code == 400
        changed = await post(client, "/dashboard/settings", {"password": PASSWORD, "new_password": "another one!"})
        assert changed.status_code == 303
        assert "Password changed" in (await client.get(changed.headers["location"])).text
        out = await post(client, "/logout", {})
        assert out.status_code == 303 and (await client.get("/dashboard")).status_code == 303
        bad = await client.post("/login", data={"username": "pat", "password": PASSWORD})
        assert bad.status_code == 401 and "Invalid username or password" in bad.text
        good = await client.post("/login?next=/dashboard/keys", data={"username": "pat", "password": "another one!"})
        assert good.status_code == 303 and good.headers["location"] == "/dashboard/keys"
        evil = await client.post("/login?next=//evil.example", data={"username": "pat", "password": "another one!"})
        assert evil.headers["location"] == "/dashboard"


async def test_too_many_failed_logins_is_a_429_on_the_page(site):
    async with member(site) as client:
        for _ in range(2):  # a client's 2nd failure in a row on an account: its next try waits
            wrong = await client.post("/login", data={"username": "pat", "password": "wrong password"})
            assert wrong.status_code == 401
        locked = await client.post("/login", data={"username": "pat", "password": PASSWORD})
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
        assert "Too many failed logins" in locked.text and locked.text.count('data-testid="error"') == 1


async def test_admin_sees_credits_and_disables(site):
    await library(site).create_user("root", PASSWORD, role="admin")
    async with member(site, "ivy") as user, web(site) as admin:
        login = await admin.post("/login", data={"username": "root", "password": PASSWORD})
        assert login.headers["location"] == "/admin"
        await library(site).create_user("eve", PASSWORD, email="<script>alert(1)</script>@x.example")
        page = await admin.get("/admin")
        assert page.status_code == 200 and "ivy" in page.text and "<td>default</td>" in page.text
        assert "<script>alert(1)" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;@x.example" in page.text
        credited = await post(admin, "/admin/credit", {"username": "ivy", "amount": "12.5", "paid": "0.5",
                                                       "reason": "refund #1"}, "/admin")
        assert credited.status_code == 200 and "Credited $12.500000 to ivy" in credited.text
        assert (await user.get("/api/me")).json()["paid_usd_total"] == "0.500000"
        assert balance_of((await user.get("/dashboard")).text) == "12.500000"
        corrected = await post(admin, "/admin/credit", {"username": "ivy", "amount": "-2.5", "reason": "dup"}, "/admin")
        assert corrected.status_code == 200 and "Took back $2.500000 (a correction) from ivy" in corrected.text
        below = await post(admin, "/admin/credit", {"username": "ivy", "amount": "-10.5", "reason": "x"}, "/admin")
        assert below.status_code == 400 and "below zero" in below.text
        ledger = (await user.get("/dashboard/ledger")).text
        assert "correction" in ledger and "dup" in ledger and "web:root" in ledger and "refund #1" in ledger
        csv_text = (await user.get("/api/ledger.csv")).text
        assert csv_text.splitlines()[0] == "id,created_at,kind,amount_usd,balance_after_usd,ref,paid_usd,reason,actor"
        assert ",correction,-2.500000,10.000000,,,dup,web:root" in csv_text
        for fields, status in (({"username": "ivy", "amount": "1"}, 400),
                               ({"username": "ivy", "amount": "x", "reason": "r"}, 400),
                               ({"username": "ivy", "amount": "1", "paid": "-2", "reason": "r"}, 400),
                               ({"username": "ghost", "amount": "1", "reason": "r"}, 404)):
            assert (await post(admin, "/admin/credit", fields, "/admin")).status_code == status, fields
        disabled = await post(admin, "/admin/disable", {"username": "ivy", "disabled": "1"}, "/admin")
        assert disabled.status_code == 200 and "ivy is disabled" in disabled.text
        assert (await user.get("/dashboard")).status_code == 303  # the session ended
        assert (await post(admin, "/admin/disable", {"username": "root"}, "/admin")).status_code == 400


async def test_a_failure_is_a_page_without_a_stack_trace(site):
    store = site.gateway.store

    async def broken(*_args):
        raise RuntimeError("secret internals")

    async with member(site) as client:
        store.spend_by_day = broken
        try:
            response = await client.get("/dashboard")
        finally:
            del store.spend_by_day
        assert response.status_code == 500 and response.headers["content-type"].startswith("text/html")
        assert "nothing was changed" in response.text and "secret internals" not in response.text
        assert "Traceback" not in response.text and response.headers["x-frame-options"] == "DENY"
        assert (await client.get("/dashboard")).status_code == 200


def test_the_spend_chart():
    today = datetime(2026, 3, 30, 12, tzinfo=timezone.utc)
    chart = pages.spend_chart([("2026-03-01", 1_000_000), ("2026-03-30", 250_000), ("2026-02-28", 9)], today)
    assert (chart["first"], chart["last"], len(chart["bars"])) == ("2026-03-01", "2026-03-30", 30)
    assert chart["bars"][0]["height"] == 90 and chart["bars"][-1]["height"] == 22.5 and chart["bars"][1]["height"] == 0
    assert (chart["total"], chart["top"]) == ("1.250000", "1.000000")  # the day before the window is not counted
    empty = pages.spend_chart([], today)
    assert empty["total"] == "0.000000" and {b["y"] for b in empty["bars"]} == {100}


def test_pages_are_not_in_the_api_document():
    assert pages.is_page("pages.dashboard") and pages.is_page("pages.static") and not pages.is_page("public.root")
    assert not pages.is_page(None)
