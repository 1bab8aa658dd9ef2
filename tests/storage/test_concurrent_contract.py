"""The Store contract under concurrent writers (every shared backend: two instances on one
database): holds, growth and transfers are conditional statements, not read-then-write,
so no interleaving of two stores' writes overdraws an account, passes a cap or loses a
transfer; opposite transfers never deadlock."""

from __future__ import annotations

import trio

from storage.base import CodeRefused, InsufficientBalance, Payment, SpendCapReached

from .helpers import funded, row


async def _all(calls) -> list:
    """Run every zero-argument coroutine function at once; each one's result or error."""
    results: list = [None] * len(calls)

    async def one(i: int) -> None:
        try:
            results[i] = await calls[i]()
        except (InsufficientBalance, SpendCapReached) as exc:
            results[i] = exc

    async with trio.open_nursery() as nursery:
        for i in range(len(calls)):
            nursery.start_soon(one, i)
    return results


async def test_holds_from_two_instances_never_exceed_the_balance(pair):
    a, b = pair
    key, account = await funded(a, 7 * 300 + 299)
    results = await _all([lambda s=(a, b)[i % 2], i=i: s.place_hold(account.id, 300, f"r{i}", key.id)
                          for i in range(40)])
    held = [r for r in results if isinstance(r, int)]
    assert len(held) == 7 and len(set(held)) == 7
    assert all(isinstance(r, InsufficientBalance) for r in results if not isinstance(r, int))
    assert (await b.get_account("u")).held == 7 * 300
    assert await a.check() == []


async def test_growth_from_two_instances_never_exceeds_the_balance(pair):
    a, b = pair
    key, account = await funded(a, 1_000)
    holds = [await (a, b)[i].place_hold(account.id, 100, f"r{i}", key.id) for i in range(2)]
    results = await _all([lambda s=(a, b)[i % 2], h=holds[i % 2]: s.extend_hold(h, 50) for i in range(30)])
    assert sum(r is None for r in results) == 16  # 800 available, 50 each
    assert (await a.get_account("u")).held == 1_000
    for store, hold in zip((a, b), holds):
        await store.release(hold, None)
    assert (await a.get_account("u")).held == 0 and await b.check() == []


async def test_growth_from_two_instances_never_passes_the_cap(pair):
    a, b = pair
    key, account = await funded(a, 100_000)
    await a.set_key_limits(key.prefix, {"daily_usd": 1_000})
    holds = [await (a, b)[i].place_hold(account.id, 100, f"r{i}", key.id) for i in range(2)]
    results = await _all([lambda s=(a, b)[i % 2], h=holds[i % 2]: s.extend_hold(h, 100) for i in range(20)])
    assert sum(r is None for r in results) == 8
    assert all(isinstance(r, SpendCapReached) for r in results if r is not None)
    assert (await b.get_account("u")).held == 1_000


async def test_opposite_transfers_from_two_instances_add_up(pair):
    a, b = pair
    await a.create_user("x")
    await a.create_user("y")
    await a.credit("x", 10_000, "credit")
    await a.credit("y", 10_000, "credit")
    x, y = await a.get_account("x"), await a.get_account("y")
    calls = [lambda s=(a, b)[i % 2], i=i: s.transfer((x, y)[i % 2].id, ("y", "x")[i % 2], 7 + i, f"t{i}")
             for i in range(40)]
    results = await _all(calls)
    assert all(isinstance(r, tuple) for r in results)
    moved = sum(7 + i for i in range(0, 40, 2)) - sum(7 + i for i in range(1, 40, 2))
    assert (await b.get_account("x")).balance == 10_000 - moved
    assert (await b.get_account("y")).balance == 10_000 + moved
    assert await a.check() == []


async def test_transfers_from_two_instances_never_overdraw(pair):
    a, b = pair
    key, account = await funded(a, 1_000)
    await a.create_user("v")
    hold = await a.place_hold(account.id, 100, "r", key.id)
    results = await _all([lambda s=(a, b)[i % 2], i=i: s.transfer(account.id, "v", 100, f"t{i}") for i in range(20)])
    assert sum(isinstance(r, tuple) for r in results) == 9  # 900 available
    assert all(isinstance(r, InsufficientBalance) for r in results if not isinstance(r, tuple))
    await a.settle(hold, row("r", key.id, 0))
    assert (await b.get_account("u")).balance == 100 and (await b.get_account("v")).balance == 900
    assert await b.check() == []


async def test_a_capped_hold_refused_leaves_nothing_held(store):
    """The cap is checked after the conditional hold, under its account's lock: a refusal
    undoes the hold (and its row) entirely."""
    key, account = await funded(store, 10_000)
    await store.set_key_limits(key.prefix, {"daily_usd": 500})
    await store.place_hold(account.id, 400, "r1", key.id)
    try:
        await store.place_hold(account.id, 200, "r2", key.id)
    except SpendCapReached as refused:
        assert (refused.committed, refused.needed) == (400, 200)
    else:
        raise AssertionError("the hold passed the cap")
    assert (await store.get_account("u")).held == 400
    assert (await store.stats()).open_holds == 1 and await store.check() == []


async def test_a_code_redeemed_from_two_instances_at_once_credits_once(pair):
    a, b = pair
    for user in ("x", "y"):
        await a.create_user(user)
    await a.create_codes([("code-hash", "abcd")], 1_000_000, 30_000_000, None)
    results: list = []

    async def redeem(store, user):
        try:
            results.append(await store.redeem_code("code-hash", user))
        except CodeRefused as refused:
            results.append(refused.reason)

    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(redeem, (a, b)[i % 2], ("x", "y")[i // 2 % 2])
    assert sorted(r if isinstance(r, str) else "ok" for r in results) == ["ok"] + ["used"] * 9
    balances = [(await b.get_account(u)).balance for u in ("x", "y")]
    assert sorted(balances) == [0, 30_000_000] and await a.check() == []


async def test_a_payment_delivered_to_two_instances_at_once_applies_once(pair):
    a, b = pair
    await a.create_user("x")
    results = await _all([lambda s=(a, b)[i % 2]: s.apply_payment(Payment("stripe", "evt_1", "x", 5, 150))
                          for i in range(10)])
    assert sum(applied for _, applied in results) == 1
    assert (await b.get_account("x")).balance == 150 and await b.paid_total("x") == 5
