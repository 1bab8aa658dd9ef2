"""The Store contract for refunds of applied payments: what is still available is taken
back, the rest recorded as owed, once per refund total (every backend must pass)."""

import pytest
import trio

from storage.base import NotFound, Payment


async def test_a_refund_takes_back_what_is_unspent_and_records_the_rest_as_owed(store):
    await store.create_user("u")
    await store.apply_payment(Payment("stripe", "cs_1", "u", 10_000_000, 300_000_000, ref="pi_1"))
    found = await store.find_payment("stripe", "pi_1")
    assert (found.event_id, found.username, found.paid, found.credit, found.refunded) == (
        "cs_1", "u", 10_000_000, 300_000_000, 0)
    assert (await store.find_payment("stripe", "cs_1")).ref == "pi_1"  # by event id too
    assert await store.find_payment("stripe", "pi_none") is None
    await store.create_user("v")
    account, _ = await store.transfer(account_id := (await store.get_account("u")).id, "v", 200_000_000, "t1")
    hold = await store.place_hold(account_id, 20_000_000, "req-1")  # $20 held by a request in flight

    half, account, taken, owed = await store.refund_payment("stripe", "cs_1", 5_000_000, 150_000_000)
    assert (taken, owed, account.balance, account.held) == (80_000_000, 70_000_000, 20_000_000, 20_000_000)
    assert (half.refunded, half.taken_back, half.owed) == (5_000_000, 80_000_000, 70_000_000)
    again = await store.refund_payment("stripe", "cs_1", 5_000_000, 150_000_000)  # the same event again
    assert again[2:] == (0, 0) and again[0] == half
    await store.release(hold, None)

    await store.credit("u", 400_000_000, "credit")
    full, account, taken, owed = await store.refund_payment("stripe", "cs_1", 10_000_000, 300_000_000)
    assert (taken, owed, account.balance) == (150_000_000, 0, 270_000_000)
    assert (full.taken_back, full.owed) == (230_000_000, 70_000_000)
    kinds = [(e.kind, e.delta, e.ref) for e in await store.ledger("u") if e.kind == "refund"]
    assert kinds == [("refund", -80_000_000, "stripe:cs_1"), ("refund", -150_000_000, "stripe:cs_1")]
    with pytest.raises(NotFound):
        await store.refund_payment("stripe", "cs_unknown", 1, 1)


async def test_concurrent_refund_events_take_back_once(store):
    await store.create_user("u")
    await store.apply_payment(Payment("stripe", "cs_2", "u", 10_000_000, 300_000_000, ref="pi_2"))
    results = []

    async def refund():
        results.append(await store.refund_payment("stripe", "cs_2", 10_000_000, 300_000_000))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(refund)
    assert sorted(r[2] for r in results) == [0, 0, 0, 0, 300_000_000]
    assert (await store.get_account("u")).balance == 0
