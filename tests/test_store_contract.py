"""The Store contract: every implementation must pass these (SQLite file and :memory: today)."""

import pytest
import trio

from storage import open_store
from storage.base import AlreadyExists, InsufficientBalance, NotFound, StoreError, UsageRow


@pytest.fixture(params=["file", "memory"])
async def store(request, tmp_path):
    s = await open_store(str(tmp_path / "s.db") if request.param == "file" else ":memory:")
    yield s
    await s.aclose()


def row(request_id: str, key_id: int, cost: int, **kw) -> UsageRow:
    kw.setdefault("status", 200)
    return UsageRow(request_id=request_id, key_id=key_id, model="claude-sonnet-4.5", endpoint="messages",
                    stream=False, cost=cost, **kw)


async def new_key(store, username="u"):
    return await store.create_key(username, "sk-cl-" + username[:8].ljust(8, "x"), "hash", "k", None, True, (),
                                  None)


async def funded(store, amount: int):
    """User "u" with a key and ``amount`` credited: (key, account)."""
    await store.create_user("u")
    key = await new_key(store)
    await store.credit("u", amount, "credit")
    return key, await store.get_account("u")


async def test_users(store):
    a = await store.create_user("u")
    assert a.balance == 0 and a.held == 0
    with pytest.raises(AlreadyExists):
        await store.create_user("u")
    with pytest.raises(NotFound):
        await store.get_account("nobody")
    assert [x.username for x in await store.list_users()] == ["u"]


async def test_credit_and_ledger(store):
    await store.create_user("u")
    await store.credit("u", 300_000_000, "topup", paid=10_000_000)
    account = await store.credit("u", 5, "credit")
    assert account.balance == 300_000_005
    entries = await store.ledger("u")
    assert [(e.delta, e.balance_after, e.kind, e.paid) for e in entries] == [
        (300_000_000, 300_000_000, "topup", 10_000_000), (5, 300_000_005, "credit", None)]
    with pytest.raises(NotFound):
        await store.credit("ghost", 1, "credit")


async def test_hold_settle_release(store):
    key, account = await funded(store, 1000)
    h1 = await store.place_hold(account.id, 600, "r1")
    with pytest.raises(InsufficientBalance) as short:
        await store.place_hold(account.id, 401, "r2")
    assert short.value.available == 400
    h2 = await store.place_hold(account.id, 400, "r2")
    assert (await store.get_account("u")).available == 0
    after = await store.settle(h1, row("r1", key.id, 250, input_tokens=5, output_tokens=7))
    assert (after.balance, after.held) == (750, 400)
    with pytest.raises(NotFound):
        await store.settle(h1, row("r1b", key.id, 1))  # settled once only
    after = await store.release(h2, row("r2", key.id, 0, status=429))
    assert (after.balance, after.held) == (750, 0)
    usage = await store.usage("u")
    assert [(u.request_id, u.cost, u.status) for u in usage] == [("r2", 0, 429), ("r1", 250, 200)]
    assert usage[1].input_tokens == 5 and usage[1].output_tokens == 7
    assert [e.delta for e in await store.ledger("u")] == [1000, -250]
    assert (await store.find_key(key.prefix)).last_used_at is not None


async def test_settle_may_exceed_hold_by_the_estimate_error(store):
    key, account = await funded(store, 100)
    hold = await store.place_hold(account.id, 100, "r")
    after = await store.settle(hold, row("r", key.id, 130))
    assert after.balance == -30 and after.held == 0


async def test_concurrent_holds_never_exceed_balance(store):
    await store.create_user("u")
    await store.credit("u", 10_000, "credit")
    account = await store.get_account("u")
    granted = []

    async def grab():
        try:
            granted.append(await store.place_hold(account.id, 700, "r"))
        except InsufficientBalance:
            pass

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(grab)
    assert len(granted) == 14
    assert (await store.get_account("u")).held == 14 * 700


async def test_recover_open_holds(store):
    await store.create_user("u")
    await store.credit("u", 1000, "credit")
    account = await store.get_account("u")
    await store.place_hold(account.id, 300, "r1")
    await store.place_hold(account.id, 200, "r2")
    assert await store.recover_open_holds() == 2
    assert (await store.get_account("u")).held == 0
    assert await store.recover_open_holds() == 0


async def test_keys(store):
    await store.create_user("u")
    key = await store.create_key("u", "sk-cl-abcdefgh", "h1", "ci", ("claude-haiku-4.5",), False,
                                 ("10.0.0.0/8",), True)
    assert (key.models, key.allow_stream, key.ips, key.pass_thinking) == (("claude-haiku-4.5",), False,
                                                                          ("10.0.0.0/8",), True)
    with pytest.raises(AlreadyExists):
        await store.create_key("u", "sk-cl-abcdefgh", "h2", "dup", None, True, (), None)
    with pytest.raises(NotFound):
        await store.create_key("ghost", "sk-cl-zzzzzzzz", "h", "x", None, True, (), None)
    assert (await store.find_key("sk-cl-abcdefgh")).username == "u"
    assert await store.find_key("sk-cl-missing0") is None
    revoked = await store.revoke_key("sk-cl-abcdefgh")
    assert revoked.revoked_at
    assert (await store.revoke_key("sk-cl-abcdefgh")).revoked_at == revoked.revoked_at
    with pytest.raises(NotFound):
        await store.revoke_key("sk-cl-nothere0")
    assert [k.prefix for k in await store.list_keys("u")] == ["sk-cl-abcdefgh"]


async def test_transfer(store):
    await store.create_user("seller")
    await store.create_user("buyer")
    await store.credit("seller", 1_000, "credit")
    seller = await store.get_account("seller")
    s, b = await store.transfer(seller.id, "buyer", 400, "t1")
    assert (s.balance, b.balance) == (600, 400)
    with pytest.raises(InsufficientBalance):
        await store.transfer(seller.id, "buyer", 601, "t2")
    with pytest.raises(NotFound):
        await store.transfer(seller.id, "ghost", 1, "t3")
    with pytest.raises(StoreError):
        await store.transfer(seller.id, "seller", 1, "t4")
    with pytest.raises(StoreError):
        await store.transfer(seller.id, "buyer", 0, "t5")
    hold = await store.place_hold(seller.id, 500, "r")
    with pytest.raises(InsufficientBalance):  # held money cannot be transferred
        await store.transfer(seller.id, "buyer", 101, "t6")
    assert [e.kind for e in await store.ledger("buyer")] == ["transfer_in"]
    assert hold


async def test_locked_database_never_blocks_the_event_loop(tmp_path):
    """Another process (the admin CLI) holding the write lock: operations give way to
    the worker thread, which waits for the lock, while the event loop keeps running."""
    import sqlite3
    import time

    path = str(tmp_path / "locked.db")
    store = await open_store(path)
    account = await store.create_user("u")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    results = []

    async def credit():
        await store.credit("u", 5, "credit")
        results.append(await store.place_hold(account.id, 5, "r"))  # the inline path gives way too

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(credit)
            ticks = []
            for _ in range(10):  # the loop stays responsive while the credit waits for the lock
                before = time.monotonic()
                await trio.sleep(0.02)
                ticks.append(time.monotonic() - before)
            assert not results and max(ticks) < 0.2
            other.execute("COMMIT")
    finally:
        other.close()
    assert results[0] > 0
    assert (await store.get_account("u")).available == 0
    await store.aclose()


async def test_settles_run_inline_on_a_quiet_lane_and_batch_under_load(tmp_path, monkeypatch):
    """A settle with nothing batchable around it commits right away on the event loop;
    settles that come close together go through the worker thread, batched."""
    from storage import sqlite as sqlite_store

    hops = []
    real = trio.to_thread.run_sync

    async def counting(fn, *args, **kwargs):
        hops.append(fn)
        return await real(fn, *args, **kwargs)

    store = await open_store(str(tmp_path / "q.db"))
    key, account = await funded(store, 10_000)
    holds = [await store.place_hold(account.id, 10, f"r{i}") for i in range(6)]
    monkeypatch.setattr(trio.to_thread, "run_sync", counting)
    await trio.sleep(sqlite_store.QUIET * 2)
    await store.settle(holds[0], row("r0", key.id, 3))
    assert hops == []                                      # quiet: inline
    async with trio.open_nursery() as nursery:            # five right after: not quiet any more
        for i, hold in enumerate(holds[1:], 1):
            nursery.start_soon(store.settle, hold, row(f"r{i}", key.id, 3))
    # the first alone (or inline, had the test been descheduled for QUIET), the four that
    # queued meanwhile together: batched, not a thread hop each
    assert 1 <= len(hops) <= 2
    account = await store.get_account("u")
    assert account.balance == 10_000 - 6 * 3 and account.held == 0
    await store.aclose()
