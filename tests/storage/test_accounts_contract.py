"""The Store contract for accounts, sessions, codes, payments and report pages: every
backend (backends.BACKENDS) must pass these."""

from dataclasses import replace
from datetime import datetime, timezone

import pytest
import trio

from storage.base import AlreadyExists, CodeRefused, InsufficientBalance, NotFound, Payment, StoreError

from .helpers import funded, new_key, row


async def test_profiles(store):
    profile = await store.create_profile("ann", "argon-hash", "ann@example.com", "admin", 5_000_000)
    assert (profile.username, profile.email, profile.role, profile.password_hash, profile.disabled) == (
        "ann", "ann@example.com", "admin", "argon-hash", False)
    assert profile.is_admin and profile.created_at
    assert [(e.kind, e.delta) for e in await store.ledger("ann")] == [("signup_credit", 5_000_000)]
    with pytest.raises(AlreadyExists):
        await store.create_profile("ann", None, None, "user")
    with pytest.raises(StoreError):
        await store.create_profile("bob", None, None, "root")
    await store.create_user("plain")  # a CLI user from before: a user, no password
    plain = await store.get_profile("plain")
    assert (plain.role, plain.password_hash, plain.email) == ("user", None, None)
    listed = await store.list_profiles()
    assert [(p.username, a.balance) for p, a in listed] == [("ann", 5_000_000), ("plain", 0)]
    with pytest.raises(NotFound):
        await store.get_profile("nobody")
    with pytest.raises(NotFound):  # nothing of the refused "bob" was made
        await store.get_account("bob")


async def test_sessions_end_on_logout_password_change_and_disable(store):
    profile = await store.create_profile("ann", "h1", None, "user")
    later = trio.current_time() + 10**10  # far future in unix time too
    for token in ("t1", "t2", "t3"):
        await store.create_session(profile.account_id, token, later)
    found = await store.find_session("t1")
    assert found.profile.username == "ann" and found.expires_at == later
    await store.end_session("t1")
    assert await store.find_session("t1") is None and await store.find_session("t2") is not None
    changed = await store.set_password("ann", "h2")
    assert changed.password_hash == "h2"
    assert await store.find_session("t2") is None and await store.find_session("t3") is None
    await store.create_session(profile.account_id, "t4", later)
    disabled = await store.set_disabled("ann", True)
    assert disabled.disabled and await store.find_session("t4") is None
    with pytest.raises(StoreError):  # no session for a disabled account
        await store.create_session(profile.account_id, "t5", later)
    assert not (await store.set_disabled("ann", False)).disabled


async def test_an_expired_session_is_never_found(store):
    profile = await store.create_profile("ann", "h", None, "user")
    with pytest.raises(StoreError):
        await store.create_session(profile.account_id, "old", 1.0)
    assert await store.find_session("old") is None


async def test_disabled_accounts_keys_say_so_and_keys_expire(store):
    key, _ = await funded(store, 100)
    assert not key.account_disabled and key.expires_at is None
    await store.set_disabled("u", True)
    assert (await store.find_key(key.prefix)).account_disabled
    assert all(k.account_disabled for k in await store.list_keys("u"))
    await store.set_disabled("u", False)
    assert not (await store.find_key(key.prefix)).account_disabled
    assert (await store.set_key_expiry(key.prefix, 1_900_000_000.5)).expires_at == 1_900_000_000.5
    assert (await store.find_key(key.prefix)).expires_at == 1_900_000_000.5
    with pytest.raises(NotFound):
        await store.set_key_expiry("sk-cl-nothere1", None)


async def test_codes_redeem_once(store):
    await store.create_user("u")
    made = await store.create_codes([("hash-a", "aaaa"), ("hash-b", "bbbb")], 10_000_000, 300_000_000, None)
    assert [(c.hint, c.paid, c.credit, c.status(0)) for c in made] == [
        ("aaaa", 10_000_000, 300_000_000, "open"), ("bbbb", 10_000_000, 300_000_000, "open")]
    code, account = await store.redeem_code("hash-a", "u")
    assert account.balance == 300_000_000 and code.redeemed_by == "u" and code.status(0) == "redeemed"
    entry = (await store.ledger("u"))[-1]
    assert (entry.kind, entry.delta, entry.paid, entry.ref) == ("redeem", 300_000_000, 10_000_000, f"code:{code.id}")
    for code_hash, reason in (("hash-a", "used"), ("nope", "unknown")):
        with pytest.raises(CodeRefused) as refused:
            await store.redeem_code(code_hash, "u")
        assert refused.value.reason == reason
    with pytest.raises(NotFound):
        await store.redeem_code("hash-b", "ghost")
    assert (await store.get_account("u")).balance == 300_000_000
    assert await store.paid_total("u") == 10_000_000
    assert [c.hint for c in await store.list_codes()] == ["bbbb", "aaaa"]
    with pytest.raises(AlreadyExists):
        await store.create_codes([("hash-a", "aaaa")], 1, 1, None)
    assert await store.check() == []


async def test_an_expired_code_is_refused(store):
    await store.create_user("u")
    await store.create_codes([("old", "oldx")], 1_000_000, 30_000_000, 1.0)
    with pytest.raises(CodeRefused) as refused:
        await store.redeem_code("old", "u")
    assert refused.value.reason == "expired"
    assert (await store.get_account("u")).balance == 0


async def test_concurrent_redeems_of_one_code_credit_once(store):
    await store.create_user("u")
    await store.create_user("v")
    await store.create_codes([("one", "onex")], 1_000_000, 30_000_000, None)
    outcomes = []

    async def redeem(who):
        try:
            await store.redeem_code("one", who)
            outcomes.append("ok")
        except CodeRefused as refused:
            outcomes.append(refused.reason)

    async with trio.open_nursery() as nursery:
        for who in ("u", "v") * 4:
            nursery.start_soon(redeem, who)
    assert sorted(outcomes) == ["ok"] + ["used"] * 7
    total = (await store.get_account("u")).balance + (await store.get_account("v")).balance
    assert total == 30_000_000


async def test_payments_apply_once_per_event(store):
    await store.create_user("u")
    payment = Payment("stripe", "evt_1", "u", 10_000_000, 300_000_000)
    account, applied = await store.apply_payment(payment)
    assert applied and account.balance == 300_000_000
    account, applied = await store.apply_payment(payment)
    assert not applied and account.balance == 300_000_000
    account, applied = await store.apply_payment(Payment("other", "evt_1", "u", 0, 5))  # another provider's id
    assert applied and account.balance == 300_000_005
    entries = await store.ledger("u")
    assert [(e.kind, e.ref, e.paid) for e in entries] == [("payment", "stripe:evt_1", 10_000_000),
                                                          ("payment", "other:evt_1", 0)]
    with pytest.raises(NotFound):
        await store.apply_payment(Payment("stripe", "evt_2", "ghost", 1, 1))


def unix(iso: str) -> float:
    return datetime.fromisoformat(iso).replace(tzinfo=timezone.utc).timestamp()


async def test_usage_and_ledger_pages(store):
    key, account = await funded(store, 10_000)
    await store.create_user("w")
    other = await new_key(store, "w")
    await store.credit("w", 10_000, "credit")
    for i, (k, model) in enumerate([(key, "claude-sonnet-4.5"), (key, "claude-haiku-4.5"), (other, "claude-sonnet-4.5"),
                                    (key, "claude-sonnet-4.5")]):
        hold = await store.place_hold(k.account_id, 100, f"r{i}")
        await store.settle(hold, replace(row(f"r{i}", k.id, 10 + i), model=model,
                                         created_at=unix(f"2026-01-01T00:00:0{i}")))
    mine = await store.usage_page("u", 10)
    assert [line.row.request_id for line in mine] == ["r3", "r1", "r0"]
    assert {line.username for line in mine} == {"u"} and mine[0].key_prefix == key.prefix
    assert [line.row.request_id for line in await store.usage_page("u", 1, before="r3")] == ["r1"]
    assert [line.row.request_id for line in await store.usage_page("u", 10, model="claude-haiku-4.5")] == ["r1"]
    assert [line.row.request_id for line in await store.usage_page(None, 10, key_prefix=other.prefix)] == ["r2"]
    assert [line.row.request_id for line in await store.usage_page(None, 10)] == ["r3", "r2", "r1", "r0"]
    entries = await store.ledger_page("u", 2)
    assert [e.kind for e in entries] == ["charge", "charge"] and entries[0].id > entries[1].id
    older = await store.ledger_page("u", 10, before=entries[-1].id)
    assert [e.kind for e in older] == ["charge", "credit"]
    assert await store.paid_total("u") == 0


async def test_spend_by_day(store):
    key, _ = await funded(store, 10_000)
    for i, (day, cost) in enumerate([("2026-01-01", 5), ("2026-01-03", 7), ("2026-01-03", 1), ("2025-12-31", 100)]):
        hold = await store.place_hold(key.account_id, 200, f"d{i}")
        await store.settle(hold, replace(row(f"d{i}", key.id, cost), created_at=unix(f"{day}T10:00:00")))
    assert list(await store.spend_by_day("u", "2026-01-01")) == [("2026-01-01", 5), ("2026-01-03", 8)]
    await store.create_user("w")
    assert list(await store.spend_by_day("w", "2026-01-01")) == []
    with pytest.raises(NotFound):
        await store.spend_by_day("ghost", "2026-01-01")


async def test_a_users_keys_are_free_tier_until_a_payment(store):
    key, _ = await funded(store, 100)  # credited, never paid
    assert (await store.find_key(key.prefix)).free_tier
    await store.credit("u", 5, "credit", paid=0)  # a paid amount of 0 is no payment
    assert (await store.find_key(key.prefix)).free_tier
    await store.credit("u", 30, "topup", paid=1)
    assert not (await store.find_key(key.prefix)).free_tier
    await store.create_user("v")
    other = await new_key(store, "v")
    await store.create_codes([("c", "cccc")], 1_000_000, 30_000_000, None)
    await store.redeem_code("c", "v")
    assert not (await store.find_key(other.prefix)).free_tier


async def test_credits_and_debits_keep_their_reason_and_actor(store):
    key, account = await funded(store, 5_000_000)
    await store.credit("u", 1_000_000, "credit", reason="goodwill", actor="cli:root")
    hold = await store.place_hold(account.id, 4_000_000, "req_held", key.id)
    with pytest.raises(InsufficientBalance):  # 6.00 balance, 4.00 held: 2.00 available
        await store.debit("u", 2_000_001, "correction", "too much", "web:root")
    after = await store.debit("u", 2_000_000, "correction", "duplicate", "web:root")
    assert (after.balance, after.held, after.available) == (4_000_000, 4_000_000, 0)
    entries = [(e.kind, e.delta, e.balance_after, e.reason, e.actor) for e in await store.ledger("u")]
    assert entries == [("credit", 5_000_000, 5_000_000, None, None),
                       ("credit", 1_000_000, 6_000_000, "goodwill", "cli:root"),
                       ("correction", -2_000_000, 4_000_000, "duplicate", "web:root")]
    assert [e.reason for e in await store.ledger_page("u", 10)] == ["duplicate", "goodwill", None]
    await store.release(hold, None)
    with pytest.raises(NotFound):
        await store.debit("nobody", 1, "correction", "x", "cli:root")
    assert await store.check() == []


async def test_sessions_are_capped_per_account(store):
    ann = await store.create_profile("ann", "h", None, "user")
    bob = await store.create_profile("bob", "h", None, "user")
    later = trio.current_time() + 10**10
    await store.create_session(bob.account_id, "b1", later, keep=2)
    for token in ("a1", "a2", "a3", "a4"):
        await store.create_session(ann.account_id, token, later, keep=2)
    assert [t for t in ("a1", "a2", "a3", "a4", "b1") if await store.find_session(t)] == ["a3", "a4", "b1"]
