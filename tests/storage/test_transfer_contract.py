"""Transfers in the Store contract: a key's spend caps bound them, and an idempotency key
makes a retried transfer move the money once (every backend)."""

from __future__ import annotations

import pytest
import trio

from storage.base import IdempotencyConflict, KeyLimits, SpendCapReached

from .helpers import funded, row


async def _capped(store, daily: int):
    key, account = await funded(store, 10_000)
    key = await store.set_key_limits(key.prefix, {"daily_usd": daily})
    await store.create_user("v")
    return key, account


async def test_a_keys_daily_cap_bounds_its_transfers_and_counts_them(store):
    key, account = await _capped(store, 1_000)
    with pytest.raises(SpendCapReached):
        await store.transfer(account.id, "v", 5_000, "t1", key.id)
    assert (await store.get_account("u")).balance == 10_000
    await store.transfer(account.id, "v", 600, "t2", key.id)
    with pytest.raises(SpendCapReached):  # 600 transferred + this hold > 1000
        await store.place_hold(account.id, 500, "r", key.id)
    hold = await store.place_hold(account.id, 400, "r", key.id)
    await store.settle(hold, row("r", key.id, 300))
    with pytest.raises(SpendCapReached):  # 600 + 300 spent: 100 left
        await store.transfer(account.id, "v", 101, "t3", key.id)
    await store.transfer(account.id, "v", 100, "t4", key.id)
    await store.transfer(account.id, "v", 5_000, "t5")  # no key (a session): no key cap
    assert (await store.get_account("v")).balance == 5_700
    assert await store.check() == []


async def test_the_same_idempotency_key_and_request_moves_money_once(store):
    key, account = await funded(store, 10_000)
    await store.create_user("v")
    first = await store.transfer_once(account.id, "v", 1_000, "t1", key.id, "idem-1", "h1")
    again = await store.transfer_once(account.id, "v", 1_000, "t2", key.id, "idem-1", "h1")
    assert not first.replayed and again.replayed
    assert (again.amount, again.sender_balance, again.receiver_balance) == (1_000, 9_000, 1_000)
    assert (first.from_username, first.to_username) == (again.from_username, again.to_username) == ("u", "v")
    with pytest.raises(IdempotencyConflict):
        await store.transfer_once(account.id, "v", 2_000, "t3", key.id, "idem-1", "h2")
    other = await store.transfer_once(account.id, "v", 1_000, "t4", key.id, "idem-2", "h1")
    assert other.sender_balance == 8_000 and not other.replayed
    assert [e.delta for e in await store.ledger("u")] == [10_000, -1_000, -1_000]


async def test_concurrent_retries_with_one_key_move_money_once(store):
    key, account = await funded(store, 10_000)
    await store.create_user("v")
    receipts = []

    async def one():
        receipts.append(await store.transfer_once(account.id, "v", 700, "t", key.id, "same", "h"))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(one)
    assert sum(not r.replayed for r in receipts) == 1 and len(receipts) == 10
    assert (await store.get_account("v")).balance == 700


async def test_a_refused_transfer_records_no_key_and_may_be_retried(store):
    key, account = await funded(store, 500)
    await store.create_user("v")
    from storage.base import InsufficientBalance
    with pytest.raises(InsufficientBalance):
        await store.transfer_once(account.id, "v", 1_000, "t", key.id, "k", "h")
    await store.credit("u", 1_000, "credit")
    assert not (await store.transfer_once(account.id, "v", 1_000, "t", key.id, "k", "h")).replayed


async def test_an_idempotency_key_lives_24_hours(backend):
    now = [1_800_000_000.0]
    store = await backend.open("inst-a", clock=lambda: now[0])
    try:
        key, account = await funded(store, 10_000)
        await store.create_user("v")
        await store.transfer_once(account.id, "v", 1_000, "t", key.id, "k", "h")
        now[0] += 24 * 3600 - 1
        assert (await store.transfer_once(account.id, "v", 1_000, "t", key.id, "k", "h")).replayed
        now[0] += 2
        assert not (await store.transfer_once(account.id, "v", 1_000, "t", key.id, "k", "h")).replayed
        assert (await store.get_account("v")).balance == 2_000
    finally:
        await store.aclose()


async def test_a_recovered_stream_is_charged_the_rest_late_within_the_balance(pair):
    from .helpers import new_key, partial_row
    a, b = pair
    await a.create_user("u")
    key = await new_key(a)
    await a.credit("u", 1_000, "credit")
    account = await a.get_account("u")
    hold = await a.place_hold(account.id, 600, "r1", key.id)
    await a.record_progress([(hold, partial_row("r1", key.id, 100))])
    await a.unregister_instance()  # a's lease is gone: b recovers its hold from the checkpoint
    assert (await b.recover_orphaned_holds()).charged == 1
    assert (await a.get_account("u")).balance == 900
    assert await a.charge_recovered(hold, partial_row("r1", key.id, 250)) == 150  # what the client received
    assert await a.charge_recovered(hold, partial_row("r1", key.id, 250)) == 0    # once
    [line] = await a.usage("u")
    assert line.cost == 250 and (await a.get_account("u")).balance == 750
    assert await a.charge_recovered(hold, partial_row("other", key.id, 50)) == 0  # not that request's hold
    other = await b.place_hold(account.id, 700, "r2", key.id)
    assert await a.charge_recovered(hold, partial_row("r1", key.id, 10_000)) == 50  # only what is available
    await b.release(other, None)
    assert (await a.get_account("u")).balance == 700 and await a.check() == []
