"""The Store contract for key limits and spend caps (every backend): limits stored with
the key; a key's spend per UTC day and month (charges settled in it + its open holds +
the new hold) bounded in the hold's own transaction, so concurrency cannot overshoot."""

from __future__ import annotations

import pytest
import trio

from storage.base import AmountOutOfRange, KeyLimits, NotFound, SpendCapReached, StoreError

from tests.fakes import HandClock

from .helpers import LEASE, funded, row


@pytest.fixture
async def clocked(backend):
    """A store on a clock the test sets: (store, clock)."""
    clock = HandClock.at("2026-11-29T23:59:59")
    store = await backend.open("inst-a", clock=clock)
    await store.register_instance(LEASE)
    yield store, clock
    await store.aclose()


async def capped(store, balance: int = 10**9, **limits):
    key, account = await funded(store, balance)
    key = await store.set_key_limits(key.prefix, limits)
    return key, account


async def test_limits_are_stored_with_the_key_and_changed_one_by_one(store):
    await store.create_user("u")
    key = await store.create_key("u", "sk-cl-limits01", "h", "k", None, True, (), None,
                                 KeyLimits(rpm=10, daily_usd=5_000_000))
    assert key.limits == KeyLimits(rpm=10, daily_usd=5_000_000) and key.limits.limited and key.limits.capped
    key = await store.set_key_limits(key.prefix, {"tpm": 1000, "rpm": None, "monthly_usd": 9})
    assert key.limits == KeyLimits(tpm=1000, daily_usd=5_000_000, monthly_usd=9)
    assert (await store.find_key(key.prefix)).limits == key.limits
    assert [k.limits for k in await store.list_keys("u")] == [key.limits]
    key = await store.set_key_limits(key.prefix, {"tpm": None, "daily_usd": None, "monthly_usd": None})
    assert not key.limits.limited and not key.limits.capped
    with pytest.raises(NotFound):
        await store.set_key_limits("sk-cl-nothere1", {"rpm": 1})
    for bad in ({"rpm": 0}, {"tpm": -1}, {"concurrency": 1.5}, {"rpm": True}, {"colour": 1}):
        with pytest.raises(StoreError):
            await store.set_key_limits(key.prefix, bad)
    with pytest.raises(AmountOutOfRange):
        await store.set_key_limits(key.prefix, {"daily_usd": 0})
    assert (await store.find_key(key.prefix)).limits == KeyLimits()


async def test_a_daily_cap_counts_settled_charges_and_open_holds(store):
    key, account = await capped(store, daily_usd=1000)
    h1 = await store.place_hold(account.id, 600, "r1", key.id)
    await store.settle(h1, row("r1", key.id, 400))
    h2 = await store.place_hold(account.id, 500, "r2", key.id)  # 400 settled + 500 held
    with pytest.raises(SpendCapReached) as refused:
        await store.place_hold(account.id, 101, "r3", key.id)
    assert (refused.value.period, refused.value.cap, refused.value.committed, refused.value.needed) == (
        "daily", 1000, 900, 101)
    assert (await store.get_account("u")).held == 500  # nothing held for the refused one
    await store.place_hold(account.id, 100, "r3", key.id)  # exactly the cap
    await store.release(h2, None)  # a released hold counts for nothing
    await store.place_hold(account.id, 500, "r4", key.id)
    with pytest.raises(SpendCapReached):
        await store.place_hold(account.id, 1, "r5", key.id)


async def test_holds_of_other_keys_and_holds_without_a_key_do_not_count(store):
    key, account = await capped(store, daily_usd=100)
    other = await store.create_key("u", "sk-cl-otherkey", "h", "k2", None, True, (), None)
    await store.place_hold(account.id, 1000, "r-other", other.id)
    await store.place_hold(account.id, 1000, "r-none")
    await store.place_hold(account.id, 100, "r1", key.id)
    with pytest.raises(SpendCapReached):
        await store.place_hold(account.id, 1, "r2", key.id)


async def test_growing_a_hold_is_bounded_by_the_cap(store):
    key, account = await capped(store, monthly_usd=1000)
    hold = await store.place_hold(account.id, 700, "r1", key.id)
    await store.extend_hold(hold, 300)
    with pytest.raises(SpendCapReached) as refused:
        await store.extend_hold(hold, 1)
    assert refused.value.period == "monthly" and refused.value.committed == 1000
    account = await store.get_account("u")
    assert account.held == 1000
    await store.settle(hold, row("r1", key.id, 1000))
    assert await store.check() == []


async def test_concurrent_holds_never_pass_the_cap(store):
    key, account = await capped(store, daily_usd=1000)
    placed, refusals = [], []

    async def one(i: int) -> None:
        try:
            placed.append(await store.place_hold(account.id, 100, f"r{i}", key.id))
        except SpendCapReached:
            refusals.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(30):
            nursery.start_soon(one, i)
    assert (len(placed), len(refusals)) == (10, 20)
    assert (await store.get_account("u")).held == 1000


async def test_instances_sharing_a_ledger_share_the_cap(pair):
    a, b = pair
    key, account = await capped(a, daily_usd=1000)
    placed = []

    async def one(store, i: int) -> None:
        try:
            placed.append(await store.place_hold(account.id, 100, f"r{i}", key.id))
        except SpendCapReached:
            pass

    async with trio.open_nursery() as nursery:
        for i in range(30):
            nursery.start_soon(one, (a, b)[i % 2], i)
    assert len(placed) == 10 and (await a.get_account("u")).held == 1000


async def test_the_day_and_the_month_roll_over_at_utc_midnight(clocked):
    store, clock = clocked  # 2026-11-29 23:59:59 UTC
    key, account = await capped(store, daily_usd=1000, monthly_usd=1500)
    hold = await store.place_hold(account.id, 600, "r1", key.id)
    await store.settle(hold, row("r1", key.id, 600))
    with pytest.raises(SpendCapReached) as refused:
        await store.place_hold(account.id, 401, "r2", key.id)
    assert refused.value.period == "daily" and refused.value.retry_after == 1  # a second to midnight
    clock.set("2026-11-30T00:00:00")  # a new day: the daily cap is whole, the month is not
    last = await store.place_hold(account.id, 900, "r2", key.id)
    with pytest.raises(SpendCapReached) as refused:
        await store.place_hold(account.id, 1, "r3", key.id)
    assert refused.value.period == "monthly" and refused.value.retry_after == 86_400  # to December 1st
    await store.settle(last, row("r2", key.id, 900))
    clock.set("2026-11-30T23:59:59.999")
    with pytest.raises(SpendCapReached):
        await store.place_hold(account.id, 1, "r3", key.id)
    clock.set("2026-12-01T00:00:00")  # a new month
    await store.place_hold(account.id, 1000, "r3", key.id)
    assert await store.check() == []


async def test_db_check_finds_a_key_spend_that_is_not_its_charges(backend):
    if backend.name == "sqlite-memory":
        pytest.skip("a second connection cannot reach an in-memory database")
    store = await backend.open("inst-a")
    key, account = await capped(store, daily_usd=10_000)
    hold = await store.place_hold(account.id, 600, "r1", key.id)
    await store.settle(hold, row("r1", key.id, 400))
    assert await store.check() == []
    raw = backend.raw()
    raw.execute("UPDATE key_spend SET spent = spent - 1")
    raw.close()
    problems = await store.check()
    assert len(problems) == 1 and "its spend is recorded as 399 but that day's charges sum to 400" in problems[0]
    await store.aclose()
