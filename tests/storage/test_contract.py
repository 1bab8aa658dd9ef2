"""The Store contract: every backend must pass these. The fixtures (conftest.py) run
each test against every entry of backends.BACKENDS; ``shared`` ones only against the
backends where several stores share one database."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import inspect

import pytest
import trio

from storage import base
from storage.base import (MAX_AMOUNT, MAX_BALANCE, AlreadyExists, AmountOutOfRange, InsufficientBalance, NotFound,
                          Recovery, StoreError, StoreUnavailable)

from .helpers import LEASE, funded, new_key, partial_row, row


CONCERNS = (base.KeyStore, base.LedgerStore, base.HoldStore, base.UsageStore, base.InstanceStore,
            base.ChannelStore, base.ChangeStore, base.MaintenanceStore, base.AccountStore, base.SessionStore,
            base.CodeStore, base.ReportStore)


def operations(protocol) -> set[str]:
    return {name for name, value in vars(protocol).items() if inspect.iscoroutinefunction(value)}


async def test_the_store_is_every_concern_and_nothing_is_left_out(store):
    """Store is the union of the concerns (no operation outside them but aclose), and
    the backend has each operation, with the protocol's parameters."""
    every = set().union(*(operations(p) for p in CONCERNS))
    assert sum(len(operations(p)) for p in CONCERNS) == len(every)          # no operation in two concerns
    assert {n for c in base.Store.__mro__ if c is not object for n in operations(c)} == every | {"aclose"}
    for name in every | {"aclose"}:
        protocol = next(c for c in base.Store.__mro__ if name in vars(c))
        implemented = getattr(store, name)
        assert inspect.iscoroutinefunction(implemented), name
        assert list(inspect.signature(implemented).parameters) == list(
            inspect.signature(getattr(protocol, name)).parameters)[1:], name


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


async def test_settle_may_exceed_its_hold_within_the_balance_never_below_zero(store):
    key, account = await funded(store, 200)
    hold = await store.place_hold(account.id, 100, "r")
    after = await store.settle(hold, row("r", key.id, 130))
    assert after.balance == 70 and after.held == 0
    first = await store.place_hold(account.id, 50, "r2")
    second = await store.place_hold(account.id, 10, "r3")
    after = await store.settle(first, row("r2", key.id, 500))  # 60 left beyond the other hold
    assert (after.balance, after.held) == (10, 10)
    [line] = [u for u in await store.usage("u") if u.request_id == "r2"]
    assert (line.cost, line.uncharged) == (60, 440)
    assert (await store.settle(second, row("r3", key.id, 10))).balance == 0
    assert await store.check() == []


async def test_a_replayed_settle_returns_the_account_and_moves_nothing(store):
    key, account = await funded(store, 1000)
    hold = await store.place_hold(account.id, 300, "r")
    first = await store.settle(hold, row("r", key.id, 250))
    again = await store.settle(hold, row("r", key.id, 250))
    assert (again.balance, again.held) == (first.balance, first.held) == (750, 0)
    assert [e.delta for e in await store.ledger("u")] == [1000, -250]
    with pytest.raises(NotFound):  # another request's settle of that hold
        await store.settle(hold, row("other", key.id, 1))
    released = await store.place_hold(account.id, 300, "q")
    await store.release(released, row("q", key.id, 0))
    assert (await store.release(released, row("q", key.id, 0))).balance == 750
    with pytest.raises(NotFound):  # settled is not released
        await store.release(hold, row("r", key.id, 0))


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


# -- hold ownership ------------------------------------------------------------------


async def test_holds_need_an_instance_id(backend):
    admin = await backend.open(instance_id=None)
    try:
        await admin.create_user("u")
        await admin.credit("u", 1000, "credit")
        account = await admin.get_account("u")
        with pytest.raises(StoreError):
            await admin.place_hold(account.id, 10, "r")
        with pytest.raises(StoreError):
            await admin.register_instance(LEASE)
        assert (await admin.get_account("u")).held == 0
        assert await admin.recover_orphaned_holds() == Recovery()  # an admin may recover, though
    finally:
        await admin.aclose()


async def test_recovery_never_touches_its_own_live_holds(store):
    key, account = await funded(store, 1000)
    hold = await store.place_hold(account.id, 300, "r1")
    await store.record_progress([(hold, partial_row("r1", key.id, 100))])
    assert await store.recover_orphaned_holds() == Recovery()
    assert (await store.get_account("u")).held == 300
    after = await store.settle(hold, row("r1", key.id, 120))
    assert (after.balance, after.held) == (880, 0)


async def test_an_unregistered_owners_holds_are_released_and_live_ones_kept(pair):
    a, b = pair
    key, account = await funded(a, 1000)
    kept = await b.place_hold(account.id, 100, "rb")
    lost = await a.place_hold(account.id, 300, "ra")
    assert await b.recover_orphaned_holds() == Recovery()    # a is alive: nothing of it touched
    assert await a.recover_orphaned_holds() == Recovery()    # nor is b
    await a.unregister_instance()                           # a says it is gone
    assert await b.recover_orphaned_holds() == Recovery(released=1)
    after = await b.get_account("u")
    assert (after.balance, after.held) == (1000, 100)
    assert [e.kind for e in await b.ledger("u")] == ["credit"]
    with pytest.raises(NotFound):
        await a.settle(lost, row("ra", key.id, 1))          # a late settle finds it closed
    await b.settle(kept, row("rb", key.id, 40))
    assert await b.check() == []


async def test_a_dead_owners_progress_is_charged_once_even_when_two_recoverers_race(shared):
    a = await shared.open("inst-a")
    await a.register_instance(LEASE)
    key, account = await funded(a, 10_000)
    holds = [await a.place_hold(account.id, 500, f"r{i}") for i in range(6)]
    await a.record_progress([(holds[0], partial_row("r0", key.id, 120)),
                             (holds[1], partial_row("r1", key.id, 0)),    # nothing delivered: released
                             (holds[2], partial_row("r2", key.id, 80))])
    await a.record_progress([(holds[2], partial_row("r2", key.id, 90))])  # the latest checkpoint counts
    await a.settle(holds[3], row("r3", key.id, 200))
    await a.unregister_instance()
    await a.aclose()
    recoverers = [await shared.open(f"rec-{i}") for i in range(3)]
    results = []

    async def recover(store):
        results.append(await store.recover_orphaned_holds())

    async with trio.open_nursery() as nursery:
        for store in recoverers:
            nursery.start_soon(recover, store)
    total = sum(results, Recovery())
    assert total == Recovery(released=3, charged=2, charged_micro=210, instances_removed=0)
    probe = recoverers[0]
    account = await probe.get_account("u")
    assert (account.balance, account.held) == (10_000 - 200 - 120 - 90, 0)
    charges = [(e.ref, e.delta) for e in await probe.ledger("u") if e.kind == "charge"]
    assert sorted(charges) == [("r0", -120), ("r2", -90), ("r3", -200)]
    usage = {u.request_id: u for u in await probe.usage("u")}
    assert usage["r0"].partial and usage["r0"].cost == 120 and usage["r0"].error_type == "client_disconnected"
    assert usage["r2"].cost == 90 and "r1" not in usage
    assert await probe.check() == []
    for store in recoverers:
        await store.aclose()


async def test_an_expired_lease_frees_its_holds_and_the_owner_comes_back(shared, caplog):
    a = await shared.open("inst-a")
    await a.register_instance(30.0)
    key, account = await funded(a, 1000)
    hold = await a.place_hold(account.id, 400, "ra")
    await a.record_progress([(hold, partial_row("ra", key.id, 25))])
    soon = await shared.open("inst-b", clock=lambda: time.time() + 20)  # within the lease
    assert await soon.recover_orphaned_holds() == Recovery()
    later = await shared.open("inst-c", clock=lambda: time.time() + 31)  # past it
    assert await later.recover_orphaned_holds() == Recovery(charged=1, charged_micro=25, instances_removed=1)
    assert (await later.get_account("u")).balance == 975
    with caplog.at_level("WARNING", logger="cheaplm.storage"):
        await a.heartbeat()                                 # a was only slow: it registers again
    assert any("taken for dead" in r.getMessage() for r in caplog.records)
    hold = await a.place_hold(account.id, 100, "ra2")
    assert await soon.recover_orphaned_holds() == Recovery()
    await a.release(hold, None)
    for store in (a, soon, later):
        await store.aclose()


async def test_record_progress_ignores_closed_holds(store):
    key, account = await funded(store, 1000)
    settled = await store.place_hold(account.id, 100, "r1")
    released = await store.place_hold(account.id, 100, "r2")
    await store.settle(settled, row("r1", key.id, 30))
    await store.release(released, None)
    await store.record_progress([(settled, partial_row("r1", key.id, 99)),
                                 (released, partial_row("r2", key.id, 99)),
                                 (10_000, partial_row("ghost", key.id, 5))])  # unknown: skipped too
    await store.record_progress([])
    account = await store.get_account("u")
    assert (account.balance, account.held) == (970, 0)
    assert await store.check() == []


async def test_only_open_holds_progress_is_charged_on_recovery(pair):
    a, b = pair
    key, account = await funded(a, 1000)
    settled = await a.place_hold(account.id, 100, "r1")
    open_ = await a.place_hold(account.id, 100, "r3")
    await a.settle(settled, row("r1", key.id, 30))
    await a.record_progress([(settled, partial_row("r1", key.id, 99)), (open_, partial_row("r3", key.id, 10))])
    await a.unregister_instance()
    assert await a.recover_orphaned_holds() == Recovery()  # never its own holds, even unregistered
    assert await b.recover_orphaned_holds() == Recovery(charged=1, charged_micro=10)
    account = await b.get_account("u")
    assert (account.balance, account.held) == (960, 0)
    assert await b.check() == []


async def test_a_killed_process_holds_are_recovered(shared, tmp_path):
    """A second real process places a hold, records progress, and is killed with
    SIGKILL: its pid is gone, so its lease need not run out."""
    here = await shared.open("parent")
    await here.register_instance(LEASE)
    key, account = await funded(here, 1000)
    script = textwrap.dedent(f"""
        import sys, trio
        from storage import open_store
        from storage.base import UsageRow

        async def main():
            store = await open_store({shared.url!r}, instance_id="child")
            await store.register_instance(600)
            hold = await store.place_hold({account.id}, 300, "req_child")
            await store.record_progress([(hold, UsageRow(
                request_id="req_child", key_id={key.id}, model="m", endpoint="messages", stream=True,
                status=499, output_tokens=40, cost=40, partial=True, error_type="gateway_lost"))])
            print(hold, flush=True)
            await trio.sleep_forever()

        trio.run(main)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=str(tmp_path),
                             env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        with trio.fail_after(60):
            line = await trio.to_thread.run_sync(child.stdout.readline)
        assert line.strip().isdigit(), line
        assert await here.recover_orphaned_holds() == Recovery()  # alive: untouched
        assert (await here.get_account("u")).held == 300
    finally:
        child.send_signal(signal.SIGKILL)
        await trio.to_thread.run_sync(child.wait)
        child.stdout.close()
    assert await here.recover_orphaned_holds() == Recovery(charged=1, charged_micro=40, instances_removed=1)
    account = await here.get_account("u")
    assert (account.balance, account.held) == (960, 0)
    usage = (await here.usage("u"))[0]
    assert (usage.request_id, usage.cost, usage.partial, usage.error_type) == ("req_child", 40, True, "gateway_lost")
    assert await here.check() == []
    await here.aclose()


# -- amount bounds --------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, True, 1.0, "5", None, MAX_AMOUNT + 1])
async def test_amounts_out_of_range_are_refused(store, bad):
    key, account = await funded(store, 1000)
    await store.create_user("v")
    hold = await store.place_hold(account.id, 100, "r")
    with pytest.raises(AmountOutOfRange):
        await store.credit("u", bad, "credit")
    with pytest.raises(AmountOutOfRange):
        await store.transfer(account.id, "v", bad, "t")
    with pytest.raises(AmountOutOfRange):
        await store.place_hold(account.id, bad, "r2")
    if bad != 0:  # a charge may be 0
        with pytest.raises(AmountOutOfRange):
            await store.settle(hold, row("r", key.id, bad))
        with pytest.raises(AmountOutOfRange):
            await store.record_progress([(hold, partial_row("r", key.id, bad))])
    account = await store.get_account("u")
    assert (account.balance, account.held) == (1000, 100)
    assert len(await store.ledger("u")) == 1
    await store.settle(hold, row("r", key.id, 0))
    assert await store.check() == []


async def test_the_largest_amounts_are_accepted(store):
    key, account = await funded(store, MAX_AMOUNT)
    hold = await store.place_hold(account.id, MAX_AMOUNT, "r")
    after = await store.settle(hold, row("r", key.id, MAX_AMOUNT))
    assert (after.balance, after.held) == (0, 0)


async def test_balances_stay_within_the_bound(store):
    await store.create_user("rich")
    await store.create_user("u")
    steps = MAX_BALANCE // MAX_AMOUNT
    for _ in range(steps):
        account = await store.credit("rich", MAX_AMOUNT, "credit")
    assert account.balance == MAX_BALANCE
    with pytest.raises(AmountOutOfRange):
        await store.credit("rich", 1, "credit")
    await store.credit("u", 5, "credit")
    u = await store.get_account("u")
    with pytest.raises(AmountOutOfRange):  # the receiver would pass the bound: nothing moves
        await store.transfer(u.id, "rich", 1, "t")
    assert (await store.get_account("u")).balance == 5
    rich = await store.get_account("rich")
    assert rich.balance == MAX_BALANCE and len(await store.ledger("rich")) == steps
    key = await new_key(store, "rich")
    hold = await store.place_hold(rich.id, MAX_AMOUNT, "r")
    after = await store.settle(hold, row("r", key.id, MAX_AMOUNT))
    assert after.balance == MAX_BALANCE - MAX_AMOUNT
    assert await store.check() == []


async def test_settles_far_past_their_holds_never_take_the_balance_below_zero(store):
    """A settle may exceed its hold, never the balance beyond the account's other holds."""
    key, account = await funded(store, 10)
    holds = [await store.place_hold(account.id, 1, f"r{i}") for i in range(5)]
    for i, hold in enumerate(holds[:4]):
        after = await store.settle(hold, row(f"r{i}", key.id, MAX_AMOUNT))
        assert after.balance == after.held == 4 - i
    assert (await store.settle(holds[-1], row("r4", key.id, MAX_AMOUNT))).balance == 0
    assert sum(u.cost for u in await store.usage("u")) == 10
    assert await store.check() == []


# -- an unavailable store -----------------------------------------------------------


async def test_a_write_locked_store_is_unavailable_after_its_busy_timeout(shared):
    store = await shared.open("inst-a", busy_timeout=0.2)
    await store.register_instance(LEASE)
    key, account = await funded(store, 1000)
    with shared.write_locked():
        for attempt in (store.credit("u", 5, "credit"), store.place_hold(account.id, 10, "r"),
                        store.heartbeat()):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as refused:
                await attempt
            assert 0.15 < time.monotonic() - started < 5.0
            assert refused.value.retry_after >= 1 and "\n" not in str(refused.value)
    account = await store.get_account("u")           # nothing was applied, and the store goes on
    assert (account.balance, account.held) == (1000, 0)
    await store.place_hold(account.id, 10, "r")
    assert await store.check() == []
    await store.aclose()


# -- invariants -------------------------------------------------------------------------


async def test_check_is_clean_on_a_busy_ledger(store):
    key, account = await funded(store, 1_000_000)
    await store.create_user("v")

    async def request(i: int):
        hold = await store.place_hold(account.id, 1000, f"r{i}")
        await trio.sleep(0)
        if i % 3 == 0:
            await store.release(hold, row(f"r{i}", key.id, 0, status=429))
        elif i % 3 == 1:
            await store.settle(hold, row(f"r{i}", key.id, i))
        else:
            await store.record_progress([(hold, partial_row(f"r{i}", key.id, i))])
            await store.settle(hold, row(f"r{i}", key.id, 2 * i))

    async with trio.open_nursery() as nursery:
        for i in range(60):
            nursery.start_soon(request, i)
        nursery.start_soon(store.transfer, account.id, "v", 5000, "t1")
        nursery.start_soon(store.credit, "v", 7, "credit")
    assert await store.check() == []
    stats = await store.stats()
    assert (stats.accounts, stats.open_holds) == (2, 0)
    assert stats.ledger_entries == len(await store.ledger("u")) + len(await store.ledger("v"))


async def test_check_reports_each_corruption(shared):
    store = await shared.open("inst-a")
    await store.register_instance(LEASE)
    key, account = await funded(store, 10_000)
    for user in ("b", "c", "d", "e"):
        await store.create_user(user)
        await store.credit(user, 1000, "credit")
        await store.credit(user, 500, "credit")
    for i in range(3):
        hold = await store.place_hold(account.id, 100, f"r{i}")
        await store.settle(hold, row(f"r{i}", key.id, 10 + i))
    await store.place_hold(account.id, 100, "open")
    assert await store.check() == []
    raw = shared.raw()
    raw.execute("UPDATE accounts SET balance = balance + 1 WHERE username = 'b'")       # balance off its ledger
    raw.execute("UPDATE ledger SET balance_after = balance_after + 7 WHERE id = "      # a broken chain
                "(SELECT MIN(l.id) FROM ledger l JOIN accounts a ON a.id = l.account_id WHERE a.username = 'c')")
    raw.execute("UPDATE accounts SET held = held + 3 WHERE username = 'd'")            # held off its holds
    raw.execute("UPDATE usage SET cost = 99 WHERE request_id = 'r0'")                  # charge != cost
    raw.execute("INSERT INTO ledger (account_id, delta, balance_after, kind, ref, created_at) "
                "SELECT account_id, delta, balance_after, kind, ref, created_at FROM ledger WHERE ref = 'r1'")  # twice
    raw.execute("DELETE FROM ledger WHERE ref = 'r2'")                                 # cost, no charge
    raw.execute("UPDATE accounts SET held = -5 WHERE username = 'e'")
    raw.close()
    problems = await store.check()
    text = "\n".join(problems)
    for needle in ("account b: balance 1501 but its ledger entries sum to 1500",
                   "account b: balance 1501 but its last ledger entry",
                   "(c): balance_after 1007 but the entry before it left 0 and the delta is 1000",
                   "account d: held 3 but its open holds add up to 0",
                   "request r0: charged 10 but its usage row says it cost 99",
                   "request r1: charged 2 times",
                   "request r2: its usage row has a cost but no ledger charge",
                   "account e: held is negative (-5)"):
        assert needle in text, (needle, problems)
    assert all("\n" not in p for p in problems)
    await store.aclose()
