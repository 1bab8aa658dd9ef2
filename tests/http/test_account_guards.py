"""What a caller may do to an account (in process, ASGITransport): a key with any
restriction reads but does not manage its account or act as an admin; admin actions
are logged with the actor; names are printable text; the admin's money tools (credits,
corrections, usage filtered and paged) go through the accounts library."""

from __future__ import annotations

import logging
import re

import pytest

from proxy.accounts.audit import Actor
from proxy.catalog import default_catalog
from storage.base import KeyLimits, UsageRow

from tests.http.inprocess import in_process

pytestmark = pytest.mark.both_stores  # the ledger fixture: SQLite and PostgreSQL

PASSWORD = "a long password"


@pytest.fixture
async def site(ledger):
    async with in_process(ledger) as app:
        yield app


async def login(client, username: str) -> None:
    response = await client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text


RESTRICTIONS = {"models": {"models": ["claude-haiku-4.5"]}, "ips": {"ips": ["127.0.0.0/8"]},
                "no stream": {"allow_stream": False}, "rpm": {"limits": KeyLimits(rpm=100)},
                "daily cap": {"limits": KeyLimits(daily_usd=1_000_000)}, "expiry": {"expires_at": 4_000_000_000.0}}


@pytest.mark.parametrize("restriction", list(RESTRICTIONS))
async def test_a_restricted_key_reads_but_cannot_manage_or_administer(site, restriction):
    lib = site.accounts
    await lib.create_user("root", PASSWORD, role="admin")
    await lib.create_user("bob")
    key, _ = await lib.create_key(default_catalog(), "root", "limited", **RESTRICTIONS[restriction])
    _, other = await lib.create_key(default_catalog(), "root", "other")
    async with site.client(**{"x-api-key": key}) as http:
        assert (await http.get("/api/me")).status_code == 200
        assert (await http.get("/api/keys")).status_code == 200
        for method, path, body in (
                ("POST", "/api/keys", {"name": "escalate"}), ("DELETE", f"/api/keys/{other.prefix}", None),
                ("POST", "/api/auth/password", {"current_password": PASSWORD, "new_password": "n" * 10}),
                ("GET", "/api/admin/users", None), ("GET", "/api/admin/usage", None),
                ("POST", "/api/admin/users/bob/credit", {"amount_usd": 1000000, "reason": "x"}),
                ("POST", "/api/admin/users/bob/disable", {})):
            refused = await http.request(method, path, json=body)
            assert refused.status_code == 403, (method, path)
            assert refused.json()["error"]["type"] == "permission_error"
            assert "restrictions" in refused.json()["error"]["message"]
    assert (await lib.account("bob")).balance == 0
    assert not (await lib.keys("root"))[1].revoked_at
    assert len(await lib.keys("root")) == 2


async def test_an_admins_unrestricted_key_administers_and_is_the_actor(site, caplog):
    lib = site.accounts
    await lib.create_user("root", PASSWORD, role="admin")
    await lib.create_user("bob")
    key, _ = await lib.create_key(default_catalog(), "root")
    caplog.set_level(logging.INFO, "cheaplm.admin")
    async with site.client(**{"x-api-key": key}) as http:
        credited = await http.post("/api/admin/users/bob/credit", json={"amount_usd": "5", "reason": "welcome"})
        assert credited.status_code == 200 and credited.json()["balance_usd"] == "5.000000"
        assert (await http.post("/api/keys", json={"name": "second"})).status_code == 201
        moved = await http.post("/api/user/transfer", json={"toUsername": "bob", "amount": 0})
        assert moved.status_code == 400  # (a transfer is the money API's: still open to the key)
    [entry] = await lib.ledger_page("bob", 10)
    assert (entry.kind, entry.delta, entry.reason, entry.actor) == ("credit", 5_000_000, "welcome", "key:root")
    lines = [r.getMessage() for r in caplog.records if r.name == "cheaplm.admin"]
    assert any("admin credit by key:root" in line and "user='bob'" in line for line in lines), lines
    assert not any(key in line or key[:14] in line or PASSWORD in line for line in lines)


async def test_the_free_tiers_rate_does_not_make_a_key_restricted(site):
    async with in_process(free_tier_rpm=3) as app:
        await app.accounts.create_user("newbie", PASSWORD)
        key, _ = await app.accounts.create_key(default_catalog(), "newbie")
        async with app.client(**{"x-api-key": key}) as http:
            assert (await http.post("/api/keys", json={"name": "mine"})).status_code == 201


async def test_a_restricted_keys_session_owner_still_manages_by_login(site):
    lib = site.accounts
    await lib.create_user("amy", PASSWORD)
    key, record = await lib.create_key(default_catalog(), "amy", models=["claude-haiku-4.5"])
    async with site.client() as web:
        await login(web, "amy")
        revoked = await web.delete(f"/api/keys/{record.prefix}")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    async with site.client(**{"x-api-key": key}) as http:
        assert (await http.get("/api/me")).status_code == 401  # at once: the library told the key cache


@pytest.mark.parametrize("username", ["root\n", " root", "root ", "ro\x1bot", "róot", ""])
async def test_usernames_are_printable_names(site, username):
    async with site.client() as web:
        refused = await web.post("/api/auth/signup", json={"username": username, "password": PASSWORD})
    assert refused.status_code == 400 and "invalid username" in refused.json()["error"]["message"]
    assert "\n" not in refused.json()["error"]["message"] and "\x1b" not in refused.json()["error"]["message"]


async def test_key_names_are_printable_text_and_errors_name_no_cli_flag(site):
    await site.accounts.create_user("kai", PASSWORD)
    async with site.client() as web:
        await login(web, "kai")
        for name in ("\x1b[31mred", "tab\there", " padded", "padded ", "line\nbreak", "", "x" * 65, 5):
            refused = await web.post("/api/keys", json={"name": name})
            assert refused.status_code == 400, name
        assert (await web.post("/api/keys", json={"name": "laptop (work)"})).status_code == 201
        empty = await web.post("/api/keys", json={"models": []})
        assert empty.status_code == 400 and "--" not in empty.json()["error"]["message"]
        assert "model list is empty" in empty.json()["error"]["message"]
        bad_ip = await web.post("/api/keys", json={"ips": ["not-a-net"]})
        assert bad_ip.status_code == 400 and "--" not in bad_ip.json()["error"]["message"]


async def usage_row(store, account_id: int, key_id: int, request_id: str, model: str) -> None:
    hold = await store.place_hold(account_id, 1000, request_id, key_id)
    await store.settle(hold, UsageRow(request_id, key_id, model, "/v1/messages", False, 200, 10, cost=100))


async def test_admin_usage_is_paged_and_filtered_by_user_model_and_day(site):
    lib, store = site.accounts, site.gateway.store
    await lib.create_user("root", PASSWORD, role="admin")
    for name in ("ann", "ben"):
        profile = await lib.create_user(name)
        await lib.credit(name, 1_000_000, "start", None)
        _, key = await lib.create_key(default_catalog(), name)
        for i, model in enumerate(("claude-haiku-4.5", "claude-sonnet-4.5", "claude-haiku-4.5")):
            await usage_row(store, profile.account_id, key.id, f"req_{name}_{i}", model)
    async with site.client() as web:
        await login(web, "root")

        async def listed(query: str) -> dict:
            response = await web.get(f"/api/admin/usage?{query}")
            assert response.status_code == 200, response.text
            return response.json()
        assert len((await listed(""))["data"]) == 6
        ann = await listed("user=ann&model=claude-haiku-4.5")
        assert [(u["username"], u["model"]) for u in ann["data"]] == [("ann", "claude-haiku-4.5")] * 2
        first = await listed("limit=4")
        rest = await listed(f"limit=4&before={first['next_before']}")
        assert len(first["data"]) == 4 and len(rest["data"]) == 2 and rest["next_before"] is None
        today = first["data"][0]["created_at"][:10]
        assert len((await listed(f"since={today}&until={today}"))["data"]) == 6
        assert (await listed("until=2001-01-01"))["data"] == []
        for bad in ("since=yesterday", "until=2026-13-01", "since=²", "limit=²", "before=" + "9" * 5000):
            assert (await web.get(f"/api/admin/usage?{bad}")).status_code == 400, bad
        page = await web.get("/admin/usage?user=ben&model=claude-sonnet-4.5", headers={"accept": "text/html"})
        assert page.status_code == 200 and 'value="ben" selected' in page.text
        assert page.text.count("<td>ben</td>") == 1 and "<td>ann</td>" not in page.text
        assert (await web.get("/admin/usage?since=nope")).status_code == 400


async def test_the_ledger_page_is_paged_with_reasons_and_actors(site):
    lib = site.accounts
    await lib.create_user("lea", PASSWORD)
    await lib.create_user("root", PASSWORD, role="admin")
    admin = Actor("root", "web")
    for i in range(52):
        await lib.credit("lea", 1_000 + i, f"bonus <{i}>", admin)
    await lib.credit("lea", -1_000, "over-credited", admin)
    async with site.client(accept="text/html") as web:
        await login(web, "lea")
        first = await web.get("/dashboard/ledger")
        assert first.status_code == 200 and first.text.count("<td>web:root</td>") == 50
        assert "over-credited" in first.text and "correction" in first.text
        assert "bonus &lt;51&gt;" in first.text and "<51>" not in first.text  # escaped
        older = re.search(r'href="/dashboard/ledger\?(before=\d+)"', first.text).group(1)
        rest = await web.get(f"/dashboard/ledger?{older}")
        assert rest.text.count("<td>web:root</td>") == 3 and "Older entries" not in rest.text
        assert (await web.get("/dashboard/ledger?before=%C2%B2")).status_code == 200  # ignored, not a 500
        csv_rows = (await web.get("/api/ledger.csv?limit=2")).text.splitlines()
        assert len(csv_rows) == 3 and csv_rows[1].endswith(",over-credited,web:root")
    async with site.client(accept="text/html") as anonymous:
        assert (await anonymous.get("/dashboard/ledger")).status_code == 303
