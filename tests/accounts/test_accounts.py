"""The accounts library (proxy/accounts/), the throttles and the payment seam, called
directly: what the CLI, the JSON API and the pages share. The login policy:
test_login_policy.py."""

import json
import time
from decimal import Decimal

import pytest
import trio

from proxy.accounts.service import AccountError, Accounts, csrf_token, parse_expiry, secret_hash
from proxy.config import AccountsConfig
from proxy.payments.providers import CodeProvider, SignedWebhook
from proxy.limits.throttle import LocalThrottle
from storage import open_store

pytestmark = pytest.mark.both_stores  # the ledger fixture: SQLite and PostgreSQL

FAST = AccountsConfig(password_time_cost=1, password_memory_kib=64)


@pytest.fixture
async def store(ledger):
    s = await open_store(ledger, instance_id="test")
    yield s
    await s.aclose()


@pytest.fixture
def accounts(store):
    return Accounts(store, FAST, Decimal(30))


async def test_passwords_are_argon2id_hashes_made_off_the_loop(accounts, store, monkeypatch):
    threads = []
    real = trio.to_thread.run_sync

    async def spy(fn, *args, **kw):
        threads.append(getattr(fn, "__name__", ""))
        return await real(fn, *args, **kw)

    monkeypatch.setattr(trio.to_thread, "run_sync", spy)
    await accounts.create_user("ann", "a long password", "ann@example.com")
    stored = (await store.get_profile("ann")).password_hash
    assert stored.startswith("$argon2id$") and "a long password" not in stored
    assert "hash" in threads
    profile, token = await accounts.login("ann", "a long password", "10.0.0.1")
    assert "verify" in threads and profile.username == "ann"
    assert (await accounts.session(token)).profile.username == "ann"
    assert (await store.find_session(token)) is None  # only the token's hash is stored
    assert await store.find_session(secret_hash(token)) is not None
    await accounts.logout(token)
    assert await accounts.session(token) is None


async def test_login_refusals(accounts):
    await accounts.create_user("ann", "a long password")
    await accounts.create_user("cli-only")  # no password: no login
    for username, password in (("ann", "wrong one!"), ("ghost", "a long password"), ("cli-only", "anything8"),
                               (None, "x"), ("ann", 5), ("ann", "x" * 5000)):
        with pytest.raises(AccountError) as refused:
            await accounts.login(username, password, "10.0.0.2")
        assert (refused.value.status, str(refused.value)) == (401, "Invalid username or password")


async def test_signup_credit_is_a_ledger_entry(store):
    accounts = Accounts(store, AccountsConfig(password_time_cost=1, password_memory_kib=64,
                                              signup_credit=Decimal("0.25")))
    profile, _ = await accounts.signup("new", "a long password", None, "10.0.0.3")
    assert [(e.kind, e.delta) for e in await store.ledger("new")] == [("signup_credit", 250_000)]
    closed = Accounts(store, AccountsConfig(password_time_cost=1, password_memory_kib=64, signup=False))
    with pytest.raises(AccountError) as refused:
        await closed.signup("newer", "a long password", None, "10.0.0.3")
    assert refused.value.status == 403


async def test_codes_buy_paid_times_the_multiplier(accounts, store):
    await accounts.create_user("ann")
    codes = await accounts.create_codes(3_333_333, count=3)
    assert len(set(codes)) == 3 and all(len(c) >= 20 and c.replace("-", "").replace("_", "").isalnum() for c in codes)
    listed = await store.list_codes()
    assert {c.code_hash for c in listed} == {secret_hash(x) for x in codes}
    assert {(c.paid, c.credit) for c in listed} == {(3_333_333, 99_999_990)}  # 3.333333 x 30, to the micro-dollar
    assert not any(code in repr(listed) for code in codes)
    credited = await CodeProvider(accounts).confirm(f"  {codes[0]}\n".encode(), {}, "ann", "10.0.0.4")
    assert (credited.credit, credited.paid, credited.account.balance) == (99_999_990, 3_333_333, 99_999_990)
    with pytest.raises(AccountError, match="already been redeemed"):
        await accounts.redeem("ann", codes[0], "10.0.0.4")
    with pytest.raises(AccountError, match="log in"):
        await CodeProvider(accounts).confirm(codes[1].encode(), {}, None, None)


async def test_a_signed_webhook_credits_once_per_event(store):
    await store.create_user("ann")
    now = 1_800_000_000.0
    hook = SignedWebhook(store, b"whsec-test", Decimal(30), clock=lambda: now)
    body = json.dumps({"id": "evt_1", "username": "ann", "paid_usd": "10"}).encode()
    headers = {"signature": hook.sign(body, now)}
    first = await hook.confirm(body, headers, None, None)
    again = await hook.confirm(body, headers, None, None)  # the provider retries its delivery
    assert (first.applied, first.credit, again.applied, again.account.balance) == (True, 300_000_000, False,
                                                                                   300_000_000)
    for bad in ({"signature": hook.sign(body, now - 1000)}, {"signature": "t=1,v1=00"}, {},
                {"signature": hook.sign(body + b" ", now)}):
        with pytest.raises(AccountError) as refused:
            await hook.confirm(body, bad, None, None)
        assert refused.value.status == 401
    assert (await store.get_account("ann")).balance == 300_000_000
    assert [e.kind for e in await store.ledger("ann")] == ["payment"]


def test_expiry_parsing():
    now = time.time()
    day = parse_expiry("2099-12-31", now)
    assert time.gmtime(day)[:4] == (2100, 1, 1, 0)  # valid through the whole day
    assert parse_expiry("2099-01-01T10:00:00Z", now) == parse_expiry("2099-01-01T12:00:00+02:00", now)
    for text in ("2001-01-01", "tomorrow", "", "2099-13-01"):
        with pytest.raises(AccountError):
            parse_expiry(text, now)


def test_csrf_token_is_per_session():
    assert csrf_token("a") != csrf_token("b") and csrf_token("a") == csrf_token("a")


async def test_throttle_slides_and_takes_its_slot_atomically():
    now = [0.0]
    throttle = LocalThrottle(2, 60, lambda: now[0])
    assert await throttle.take("ip") == 0
    now[0] = 10
    assert await throttle.take("ip") == 0
    assert await throttle.take("ip") == pytest.approx(50)  # refused: nothing recorded
    assert await throttle.take("other") == 0
    now[0] = 59
    assert await throttle.take("ip") == pytest.approx(1)
    now[0] = 70.5
    assert await throttle.take("ip") == 0  # the first left the window
    await throttle.give_back("ip")  # (it succeeded: it does not count)
    assert await throttle.take("ip") == 0
    assert await throttle.take("ip") == 0
    assert await throttle.take("ip") == pytest.approx(60)
    await throttle.clear("ip")
    assert await throttle.take("ip") == 0
