"""What only the SQLite store has: the writer lane and the loop's read-only connection,
integer storage near the bounds, its recorded migrations (and the holds from before
owners), sqlite3 faults mapped to StoreUnavailable."""

import sqlite3
import time

import pytest
import trio

from storage import open_store
from storage.caps import day_of
from storage.base import MAX_AMOUNT, MAX_BALANCE, AmountOutOfRange, Recovery, StoreUnavailable, UsageRow
from storage.sqlite import lane
from storage.sqlite.migrations import MIGRATIONS
from storage.sqlite.transactions import unavailable
from .helpers import funded, row, sqlite_ledger_at


async def test_locked_database_never_blocks_the_event_loop(tmp_path):
    """Another process (the admin CLI) holding the write lock: operations give way to
    the worker thread, which waits for the lock, while the event loop keeps running."""
    path = str(tmp_path / "locked.db")
    store = await open_store(path, instance_id="inst-a")
    account = await store.create_user("u")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    results = []

    async def credit():
        await store.credit("u", 5, "credit")
        results.append(await store.place_hold(account.id, 5, "r"))

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


class Hops:
    """Counts the thread hops of the code under test: trio.to_thread.run_sync calls, and
    the writer lane's own (lane.in_thread)."""

    def __init__(self, monkeypatch) -> None:
        self.calls = []
        self._real, self._lane = trio.to_thread.run_sync, lane.in_thread
        monkeypatch.setattr(trio.to_thread, "run_sync", self.run_sync)
        monkeypatch.setattr(lane, "in_thread", self.in_thread)

    async def run_sync(self, fn, *args, **kwargs):
        self.calls.append(fn)
        return await self._real(fn, *args, **kwargs)

    async def in_thread(self, fn, *args):
        self.calls.append(fn)
        return await self._lane(fn, *args)


async def test_writes_run_in_the_thread_batched_and_key_lookups_on_the_loop(tmp_path, monkeypatch):
    """No write commits on the event loop's thread (a commit may checkpoint and fsync:
    see storage/sqlite/reader.py); settles that queue together share one thread hop;
    a key lookup runs on the loop, on a connection that cannot write, even while
    another process holds the write lock."""
    path = str(tmp_path / "q.db")
    store = await open_store(path, instance_id="inst-a")
    key, account = await funded(store, 10_000)
    hops = Hops(monkeypatch)
    holds = [await store.place_hold(account.id, 10, f"r{i}") for i in range(6)]
    assert len(hops.calls) == 6
    hops.calls.clear()
    await store.settle(holds[0], row("r0", key.id, 3))
    assert len(hops.calls) == 1
    hops.calls.clear()
    async with trio.open_nursery() as nursery:
        for i, hold in enumerate(holds[1:], 1):
            nursery.start_soon(store.settle, hold, row(f"r{i}", key.id, 3))
    assert 1 <= len(hops.calls) <= 2                       # the first alone, the four that queued together
    hops.calls.clear()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        assert (await store.find_key(key.prefix)).id == key.id
        assert await store.find_key("sk-cl-missing0") is None
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert hops.calls == []
    loop_db = store._reader.db
    assert [loop_db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("query_only", "wal_autocheckpoint",
                                                                   "busy_timeout")] == [1, 0, 0]
    with pytest.raises(sqlite3.OperationalError):
        loop_db.execute("DELETE FROM accounts")
    account = await store.get_account("u")
    assert account.balance == 10_000 - 6 * 3 and account.held == 0
    await store.aclose()


async def test_a_busy_loop_read_goes_to_the_read_path(tmp_path, monkeypatch):
    """If SQLite answers "busy" to the loop's read (a WAL being recovered), the lookup
    runs in a read path's thread instead; an in-memory store has no loop connection."""
    store = await open_store(str(tmp_path / "b.db"), instance_id="inst-a")
    key, _ = await funded(store, 10)

    def busy(prefix):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(store._looked_up, "find_key", busy)
    hops = Hops(monkeypatch)
    assert (await store.find_key(key.prefix)).id == key.id
    assert len(hops.calls) == 1
    await store.aclose()
    memory = await open_store(":memory:")
    key, _ = await funded(memory, 10)
    hops.calls.clear()
    assert (await memory.find_key(key.prefix)).id == key.id and len(hops.calls) == 1
    await memory.aclose()


def usage_row(request_id: str, key_id: int, cost: int) -> UsageRow:
    return UsageRow(request_id=request_id, key_id=key_id, model="m", endpoint="messages", stream=False,
                    status=200, cost=cost)


async def test_reads_never_take_the_write_lock(tmp_path, monkeypatch):
    """With another connection holding the write lock (a writer mid-transaction), every
    read of the store answers at once, off the event loop and outside the writer lane;
    a write still waits for the lock (and gives up after the busy timeout)."""
    path = str(tmp_path / "r.db")
    store = await open_store(path, instance_id="inst-a", busy_timeout=0.3)
    key, _ = await funded(store, 1_000)
    session = await store.create_session((await store.get_account("u")).id, "tok", time.time() + 60)
    lane_ops = []
    real_run = store._lane.run

    async def run(fn, *args, **kwargs):
        lane_ops.append(fn)
        return await real_run(fn, *args, **kwargs)

    monkeypatch.setattr(store._lane, "run", run)
    reads = [store.list_users(), store.get_account("u"), store.list_keys("u"), store.usage("u"),
             store.channel_overrides(), store.channel_status(), store.ledger("u"), store.get_profile("u"),
             store.list_profiles(), store.find_session("tok"), store.list_codes(), store.usage_page(None, 10),
             store.ledger_page("u", 10), store.paid_total("u"), store.spend_by_day("u", "2020-01-01"),
             store.check(), store.stats()]
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        results = [await read for read in reads]
        assert time.monotonic() - started < 0.3 * 2
        with pytest.raises(StoreUnavailable):
            await store.credit("u", 1, "credit")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert results[1].balance == 1_000 and results[9].id == session.id and results[15] == []
    assert len(lane_ops) == 1  # the write alone went to the lane
    await store.aclose()


async def test_balances_near_the_bound_stay_integers(tmp_path):
    path = str(tmp_path / "big.db")
    store = await open_store(path, instance_id="inst-a")
    await store.create_user("rich")
    for _ in range(MAX_BALANCE // MAX_AMOUNT - 1):
        await store.credit("rich", MAX_AMOUNT, "credit")
    await store.credit("rich", MAX_AMOUNT - 1, "credit")
    await store.credit("rich", 1, "credit")
    with pytest.raises(AmountOutOfRange):
        await store.credit("rich", 1, "credit")
    await store.aclose()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT balance, typeof(balance), typeof(held) FROM accounts").fetchone() == (
        MAX_BALANCE, "integer", "integer")
    assert conn.execute("SELECT DISTINCT typeof(delta), typeof(balance_after) FROM ledger").fetchall() == [
        ("integer", "integer")]
    assert conn.execute("SELECT MAX(balance_after) FROM ledger").fetchone() == (MAX_BALANCE,)
    conn.close()


async def test_check_reports_money_stored_as_real(tmp_path):
    path = str(tmp_path / "real.db")
    store = await open_store(path)
    await store.create_user("u")
    await store.credit("u", 10, "credit")
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("UPDATE accounts SET balance = 10.5")
    raw.close()
    problems = await store.check()
    assert "accounts row 1: balance is stored as real (10.5), not an integer" in problems
    await store.aclose()


def legacy_database(path: str) -> None:
    """A ledger as the version before hold owners left it: one hold still open."""
    db = sqlite_ledger_at(path, 1)
    db.execute("INSERT INTO accounts (username, balance, held, created_at) VALUES ('old', 1000, 300, 'then')")
    db.execute("INSERT INTO ledger (account_id, delta, balance_after, kind, created_at) "
               "VALUES (1, 1000, 1000, 'credit', 'then')")
    db.execute("INSERT INTO holds (account_id, amount, request_id, state, created_at) "
               "VALUES (1, 300, 'req_old', 'open', 'then')")
    db.conn.close()


async def test_holds_from_before_owners_are_recovered_as_orphans(tmp_path):
    path = str(tmp_path / "legacy.db")
    legacy_database(path)
    store = await open_store(path, instance_id="inst-a")
    await store.register_instance(60)
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY name")] == [
        *sorted(name for name, _ in MIGRATIONS)]
    assert conn.execute("SELECT owner, progress FROM holds").fetchall() == [(None, None)]
    conn.close()
    assert await store.check() == []
    assert await store.recover_orphaned_holds() == Recovery(released=1)
    account = await store.get_account("old")
    assert (account.balance, account.held) == (1000, 0)
    await store.aclose()


async def test_key_limits_migration_rolls_up_the_charges_made_before_it(tmp_path):
    """0003_key_limits: each key's charges per UTC day, from the usage rows already there."""
    path = str(tmp_path / "before-limits.db")
    db = sqlite_ledger_at(path, 2)
    db.execute("INSERT INTO accounts (username, balance, held, created_at) VALUES ('old', 0, 0, 'then')")
    for request_id, cost, at in (("a", 5, "2026-11-01T10:00:00.000+00:00"), ("b", 7, "2026-11-01T23:59:59.999+00:00"),
                                 ("c", 0, "2026-11-02T00:00:00.000+00:00"), ("d", 3, "2026-11-02T00:00:00.000+00:00")):
        db.execute("INSERT INTO usage (request_id, key_id, account_id, model, endpoint, stream, status, cost, "
                   "created_at) VALUES (?, 1, 1, 'm', 'messages', 0, 200, ?, ?)", (request_id, cost, at))
    db.conn.close()
    store = await open_store(path, instance_id="inst-a")
    conn = sqlite3.connect(path)
    assert [(k, day_of(day), spent) for k, day, spent in conn.execute(
        "SELECT key_id, day, spent FROM key_spend ORDER BY day")] == [(1, "2026-11-01", 12), (1, "2026-11-02", 3)]
    conn.close()
    await store.aclose()


async def test_connections_opening_a_new_ledger_at_once_migrate_it_once(tmp_path):
    path = str(tmp_path / "new.db")
    stores = []

    async def open_one(i):
        stores.append(await open_store(path, instance_id=f"i{i}"))

    async with trio.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(open_one, i)
    assert len(stores) == 4
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM _migrations").fetchone() == (len(MIGRATIONS),)
    conn.close()
    for store in stores:
        await store.aclose()


@pytest.mark.parametrize("where", ["missing/dir/x.db", "/proc/cheaplm-test.db"])
async def test_an_unopenable_ledger_is_one_line(tmp_path, where):
    path = where if where.startswith("/") else str(tmp_path / where)
    with pytest.raises(StoreUnavailable) as refused:
        await open_store(path)
    message = str(refused.value)
    assert message.startswith(f"cannot open the ledger at {path}: ") and "\n" not in message
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


async def test_a_read_only_ledger_is_unavailable_and_nothing_half_applied(tmp_path):
    store = await open_store(str(tmp_path / "ro.db"), instance_id="inst-a")
    await store.create_user("u")
    db = store._ledger.db
    await store._lane.run(db.execute, "PRAGMA query_only=1")
    for attempt in (store.credit("u", 5, "credit"), store.create_user("v")):
        with pytest.raises(StoreUnavailable) as refused:
            await attempt
        assert "readonly" in str(refused.value) and refused.value.retry_after >= 1
    await store._lane.run(db.execute, "PRAGMA query_only=0", reads_only=True)
    await store.credit("u", 5, "credit")
    assert [a.username for a in await store.list_users()] == ["u"]
    assert await store.check() == []
    await store.aclose()


async def test_a_full_disk_fails_the_whole_batch_and_the_store_goes_on(tmp_path):
    store = await open_store(str(tmp_path / "full.db"), instance_id="inst-a")
    await store.create_user("u")
    db = store._ledger.db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    await store._lane.run(db.execute, f"PRAGMA max_page_count={pages}")
    big = "x" * 100_000
    results = []

    async def credit(i):
        try:
            results.append(await store.credit("u", 1, "credit", ref=big if i == 3 else None))
        except StoreUnavailable as exc:
            results.append(exc)

    async with trio.open_nursery() as nursery:  # batched together: one transaction
        for i in range(6):
            nursery.start_soon(credit, i)
    refused = [r for r in results if isinstance(r, StoreUnavailable)]
    assert refused and "full" in str(refused[0]) and refused[0].retry_after >= 1
    account = await store.get_account("u")
    assert account.balance == len(results) - len(refused)  # what was refused left no trace
    assert await store.check() == []
    await store._lane.run(db.execute, "PRAGMA max_page_count=1073741823")
    await store.credit("u", 1, "credit", ref=big)
    assert await store.check() == []
    await store.aclose()


@pytest.mark.parametrize("message,code,retry", [
    ("database is locked", 5, 1), ("attempt to write a readonly database", 8, 2), ("disk I/O error", 10, 2),
    ("database or disk is full", 13, 2), ("unable to open database file", 14, 2),
])
def test_sqlite_faults_map_to_unavailable(message, code, retry):
    exc = sqlite3.OperationalError(message)
    mapped = unavailable(exc)
    assert isinstance(mapped, StoreUnavailable) and mapped.retry_after == retry and message in str(mapped)
    exc.sqlite_errorcode = code
    assert unavailable(exc).retry_after == retry


@pytest.mark.parametrize("exc", [sqlite3.OperationalError("no such table: x"), sqlite3.IntegrityError("UNIQUE"),
                                 ValueError("x")])
def test_other_errors_keep_their_type(exc):
    assert unavailable(exc) is None


async def test_recovery_runs_in_batches_and_survives_unreadable_progress(tmp_path, monkeypatch):
    from storage.sql import owners

    monkeypatch.setattr(owners, "RECOVERY_BATCH", 2)
    path = str(tmp_path / "batches.db")
    dead = await open_store(path, instance_id="dead")
    await dead.register_instance(60)
    await dead.create_user("u")
    await dead.credit("u", 1000, "credit")
    account = await dead.get_account("u")
    key = await dead.create_key("u", "sk-cl-aaaaaaaa", "h", "k", None, True, (), None)
    holds = [await dead.place_hold(account.id, 100, f"r{i}") for i in range(5)]
    await dead.record_progress([(hold, usage_row(f"r{i}", key.id, 7)) for i, hold in enumerate(holds)])
    await dead.unregister_instance()
    await dead.aclose()
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("UPDATE holds SET progress = '{not json' WHERE request_id = 'r1'")
    raw.close()
    store = await open_store(path, instance_id="live")
    assert await store.recover_orphaned_holds() == Recovery(released=1, charged=4, charged_micro=28)
    account = await store.get_account("u")
    assert (account.balance, account.held) == (1000 - 28, 0)
    assert all(u.partial for u in await store.usage("u"))
    assert await store.check() == []
    await store.aclose()


async def test_usage_rows_from_before_channels_read_back_with_neither(tmp_path):
    """0004_channels adds usage.channel and usage.attempts: older rows have neither (None),
    new rows keep what they were given."""
    path = str(tmp_path / "before-channels.db")
    db = sqlite_ledger_at(path, 2)
    db.execute("INSERT INTO accounts (username, balance, held, created_at) VALUES ('old', 0, 0, 'then')")
    db.execute("INSERT INTO usage (request_id, key_id, account_id, model, endpoint, stream, status, cost, partial, "
               "created_at) VALUES ('req_old', 1, 1, 'm', 'messages', 0, 200, 0, 0, '2020-01-01')")
    db.conn.close()
    store = await open_store(path, instance_id="inst-a")
    await store.register_instance(60)
    key = await store.create_key("old", "sk-cl-oldoldol", "h", "k", None, True, (), None)
    account = await store.get_account("old")
    await store.credit("old", 100, "credit")
    hold = await store.place_hold(account.id, 10, "req_new")
    await store.settle(hold, UsageRow(request_id="req_new", key_id=key.id, model="m", endpoint="messages",
                                      stream=False, status=200, cost=5, channel="backup", attempts=2))
    assert [(u.request_id, u.channel, u.attempts) for u in await store.usage("old")] == [
        ("req_new", "backup", 2), ("req_old", None, None)]
    await store.aclose()
