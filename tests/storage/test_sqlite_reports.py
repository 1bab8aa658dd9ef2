"""SQLite reads beside writes: 0006 (one time representation, the report indexes), and
holds placed while the heavy reports run over a ledger of 300,000 usage rows."""

from __future__ import annotations

import sqlite3
import statistics
import time
from datetime import datetime

import trio

from storage import open_store
from storage.caps import DAY, day_of
from storage.sqlite.migrations import ISO_TIME_COLUMNS

from .helpers import LEASE, funded, new_key, sqlite_ledger_at


def unix(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def test_0006_turns_every_iso_time_into_unix_seconds(tmp_path):
    path = str(tmp_path / "before-0006.db")
    db = sqlite_ledger_at(path, 5)
    at = "2026-11-01T10:00:00.250+00:00"
    db.execute("INSERT INTO accounts (username, balance, held, created_at, paid_at) VALUES ('old', 5, 0, ?, ?)",
               (at, at))
    db.execute("INSERT INTO api_keys (account_id, prefix, key_hash, name, allow_stream, created_at, revoked_at) "
               "VALUES (1, 'sk-cl-oldoldol', 'h', 'k', 1, ?, ?)", (at, at))
    db.execute("INSERT INTO ledger (account_id, delta, balance_after, kind, created_at) VALUES (1, 5, 5, 'credit', ?)",
               (at,))
    db.execute("INSERT INTO usage (request_id, key_id, account_id, model, endpoint, stream, status, cost, created_at)"
               " VALUES ('r', 1, 1, 'm', 'messages', 0, 200, 0, ?)", (at,))
    db.execute("INSERT INTO codes (code_hash, hint, paid, credit, created_at, redeemed_at, redeemed_by) "
               "VALUES ('c', 'cccc', 1, 1, ?, NULL, NULL)", (at,))
    db.execute("INSERT INTO key_spend (key_id, day, spent) VALUES (1, '2026-11-01', 7)")
    db.conn.close()
    store = await open_store(path, instance_id="inst-a")
    account = await store.get_account("old")
    key = await store.find_key("sk-cl-oldoldol")
    assert account.created_at == key.created_at == key.revoked_at == unix(at)
    assert (await store.usage("old"))[0].created_at == unix(at) == (await store.ledger("old"))[0].created_at
    assert (await store.list_codes())[0].created_at == unix(at)
    conn = sqlite3.connect(path)
    for table, column in ISO_TIME_COLUMNS:
        kinds = {k for (k,) in conn.execute(f"SELECT DISTINCT typeof({column}) FROM {table}")}
        assert kinds <= {"real", "null"}, (table, column, kinds)
    assert [(k, day_of(d), s) for k, d, s in conn.execute("SELECT key_id, day, spent FROM key_spend")] == [
        (1, "2026-11-01", 7)]
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"idx_usage_created", "idx_usage_account_created", "idx_usage_key_created"} <= indexes
    conn.close()
    await store.aclose()


USAGE_ROWS = 300_000


def _fill(path: str, busy_account: int, busy_key: int, other_account: int, other_key: int, now: float) -> None:
    """USAGE_ROWS usage rows over the last 60 days, two thirds the busy user's."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO usage (request_id, key_id, account_id, model, endpoint, stream, status, input_tokens, "
        "output_tokens, cost, partial, created_at) VALUES (?, ?, ?, ?, 'messages', 0, 200, 100, 50, 10, 0, ?)",
        ((f"req_{i:07d}", *((busy_key, busy_account) if i % 3 else (other_key, other_account)),
          ("claude-sonnet-4.5", "claude-haiku-4.5")[i % 2], now - 60 * DAY * (1 - i / USAGE_ROWS))
         for i in range(USAGE_ROWS)))
    conn.execute("COMMIT")
    conn.close()


def _figures(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    return (f"p50 {statistics.median(ms):.3f} ms, p99 {ms[int(len(ms) * 0.99) - 1]:.3f} ms, "
            f"max {ms[-1]:.3f} ms ({len(ms)} holds)")


async def test_holds_stay_fast_while_reports_run_over_300k_usage_rows(tmp_path):
    """Holds go on in the writer lane while the admin usage page, a busy user's pages and
    spend_by_day, and db check run on the read path: the holds' latency with the reports
    running stays within a few milliseconds of without (figures printed, for quoting)."""
    path = str(tmp_path / "big.db")
    store = await open_store(path, instance_id="inst-a")
    await store.register_instance(LEASE)
    key, account = await funded(store, 10**12)
    await store.create_user("w")
    other = await new_key(store, "w")
    now = time.time()
    started = time.monotonic()
    await trio.to_thread.run_sync(_fill, path, account.id, key.id, other.account_id, other.id, now)
    filled = time.monotonic() - started
    since = day_of(int((now - 30 * DAY) // DAY))

    async def holds(n: int) -> list[float]:
        took = []
        for i in range(n):
            before = time.perf_counter()
            hold = await store.place_hold(account.id, 100, f"h{i}", key.id)
            took.append(time.perf_counter() - before)
            await store.release(hold, None)
            await trio.sleep(0.001)
        return took

    quiet = await holds(300)
    reports: list[tuple[str, float]] = []

    async def report_loop(name, call, cancel_scope):
        while True:
            before = time.perf_counter()
            await call()
            reports.append((name, time.perf_counter() - before))
            await trio.sleep(0)

    busy: list[float] = []
    async with trio.open_nursery() as nursery:
        for name, call in (
                ("admin usage page", lambda: store.usage_page(None, 50)),
                ("admin usage page 2", lambda: store.usage_page(None, 50, before="req_0299000")),
                ("admin usage by model", lambda: store.usage_page(None, 50, model="claude-haiku-4.5")),
                ("user usage page", lambda: store.usage_page("u", 50)),
                ("spend_by_day (30 days)", lambda: store.spend_by_day("u", since)),
                ("db check", store.check)):
            nursery.start_soon(report_loop, name, call, nursery.cancel_scope)
        await trio.sleep(0.05)
        busy = await holds(300)
        nursery.cancel_scope.cancel()
    by_name: dict[str, list[float]] = {}
    for name, took in reports:
        by_name.setdefault(name, []).append(took)
    print(f"\n{USAGE_ROWS} usage rows written in {filled:.1f} s")
    print(f"hold latency without reports: {_figures(quiet)}")
    print(f"hold latency with reports:    {_figures(busy)}")
    for name, took in by_name.items():
        print(f"  {name}: {len(took)} runs, median {statistics.median(took) * 1000:.1f} ms, "
              f"max {max(took) * 1000:.1f} ms")
    assert len(by_name) == 6 and by_name["db check"]  # every report ran while the holds went on
    assert statistics.median(busy) < statistics.median(quiet) + 0.003  # within a few milliseconds
    # No hold waited for a report (as each did behind BEGIN IMMEDIATE before): the slowest
    # holds stay far below one db check, whatever else this shared machine runs meanwhile.
    assert sorted(busy)[int(len(busy) * 0.99) - 1] < statistics.median(by_name["db check"]) / 4
    assert (await store.get_account("u")).held == 0
    await store.aclose()
