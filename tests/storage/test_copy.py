"""`cheaplm db copy --from URL --to URL`: a ledger copied between backends (SQLite ->
PostgreSQL -> SQLite), verified before it is reported; refused into a ledger that is
not empty, or when the copy does not come out equal."""

from __future__ import annotations

import sqlite3

import pytest

from proxy.cli.main import main
from storage import copy_store, open_store
from storage.base import Payment
from storage.sql import copy as copying
from storage.sql.copy import CopyRefused

from .helpers import LEASE, funded, row


async def _a_busy_ledger(url: str) -> None:
    store = await open_store(url, instance_id="inst-a")
    await store.register_instance(LEASE)
    key, account = await funded(store, 50_000)
    await store.set_key_limits(key.prefix, {"daily_usd": 40_000})
    await store.create_profile("v", "argon-hash", "v@example.com", "admin", credit=700)
    for i in range(7):
        hold = await store.place_hold(account.id, 1000, f"r{i}", key.id)
        await store.settle(hold, row(f"r{i}", key.id, 100 + i))
    await store.place_hold(account.id, 300, "still-open", key.id)
    await store.transfer(account.id, "v", 2_000, "t1")
    await store.create_codes([("h1", "aaaa"), ("h2", "bbbb")], 1_000, 30_000, None)
    await store.redeem_code("h1", "v")
    await store.apply_payment(Payment("stripe", "evt_1", "u", 10, 300))
    await store.create_session((await store.get_account("v")).id, "token-hash", 4e9)
    await store.set_channel_enabled("primary", False, "maintenance")
    await store.aclose()


async def _picture(url: str) -> tuple:
    """What a reader of the ledger sees, from every report."""
    store = await open_store(url, create=False, upgrade=False)
    picture = (await store.list_profiles(), await store.ledger("u"), await store.ledger("v"),
               [line.row for line in await store.usage_page(None, 100)], await store.list_codes(),
               await store.channel_overrides(), (await store.find_session("token-hash")).profile,
               await store.spend_by_day("u", "2020-01-01"), await store.stats(), await store.check())
    await store.aclose()
    return picture


async def test_a_ledger_copies_to_postgresql_and_back_and_reads_the_same(tmp_path, pg_url):
    source, back = f"sqlite://{tmp_path}/source.db", f"sqlite://{tmp_path}/back.db"
    await _a_busy_ledger(source)
    copied = await copy_store(source, pg_url)
    assert copied.accounts == 2 and copied.rows["usage"] == 7 and copied.rows["holds"] == 8
    assert (await copy_store(pg_url, back)).rows == copied.rows
    pictures = [await _picture(url) for url in (source, pg_url, back)]
    assert pictures[0] == pictures[1] == pictures[2]
    assert pictures[0][-1] == [] and pictures[0][-2].open_holds == 1
    store = await open_store(pg_url, instance_id="inst-b")  # the copy goes on numbering after the copied ids
    await store.register_instance(LEASE)
    assert (await store.create_user("w")).id == 3
    assert (await store.recover_orphaned_holds()).released == 1  # the source's open hold, owner not here
    assert await store.check() == []
    await store.aclose()


async def test_a_copy_into_a_ledger_that_is_not_empty_is_refused(tmp_path):
    source, target = f"sqlite://{tmp_path}/a.db", f"sqlite://{tmp_path}/b.db"
    await _a_busy_ledger(source)
    other = await open_store(target)
    await other.create_user("someone")
    await other.aclose()
    with pytest.raises(CopyRefused, match="not empty"):
        await copy_store(source, target)


async def test_a_copy_that_does_not_come_out_equal_is_refused(tmp_path, monkeypatch):
    source, target = f"sqlite://{tmp_path}/a.db", f"sqlite://{tmp_path}/b.db"
    await _a_busy_ledger(source)
    monkeypatch.setattr(copying, "PAGE", 2)
    copy_table = copying._copy_table

    async def losing_a_page(source_store, target_store, table, key, columns):
        copied = await copy_table(source_store, target_store, table, key, columns)
        if table == "ledger":  # a ledger entry lost on the way
            await target_store._write(lambda o: o.db.execute("DELETE FROM ledger WHERE id = 3"))
        return copied

    monkeypatch.setattr(copying, "_copy_table", losing_a_page)
    with pytest.raises(CopyRefused) as refused:
        await copy_store(source, target)
    assert "ledger: 13 rows in the source, 12 in the copy (13 copied)" in str(refused.value)
    assert "ledger sum" in str(refused.value)


def test_db_copy_from_the_cli(capsys, tmp_path):
    source, target = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    assert main(["user", "create", "ann", "--db", source]) == 0
    assert main(["topup", "ann", "--credit", "5", "--db", source]) == 0
    capsys.readouterr()
    assert main(["db", "copy", "--from", source, "--to", f"sqlite://{target}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"copied {source} to {target}: 1 accounts, 0 api_keys, 1 ledger")
    assert out.endswith("every account's balance, held and ledger sum match (1 accounts)\n")
    assert sqlite3.connect(target).execute("SELECT balance FROM accounts").fetchone() == (5_000_000,)
    assert main(["db", "copy", "--from", source, "--to", target]) == 1
    assert "the destination ledger is not empty" in capsys.readouterr().err
