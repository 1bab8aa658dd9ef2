"""The admin operations as library calls (proxy/admin.py): every CLI command is a thin call
into one of these, and their errors (AdminError, StoreError) are worded here."""

import os

import pytest

from proxy.accounts import admin
from proxy.catalog import default_catalog
from proxy.cli.main import main
from proxy.money import MAX_AMOUNT
from storage.base import NotFound


@pytest.fixture
async def store(tmp_path):
    async with admin.open_ledger(str(tmp_path / "lib.db"), create=True) as store:
        yield store


async def test_reports(store):
    await admin.create_user(store, "zoe")
    await admin.create_user(store, "amy")
    key, record = await admin.create_key(store, default_catalog(), "zoe", "laptop")
    await admin.topup(store, "zoe", 30, credit_usd="2.5")
    assert [a.username for a in await admin.list_users(store)] == ["amy", "zoe"]
    assert [k.prefix for k in await admin.list_keys(store, "zoe")] == [record.prefix]
    assert (await admin.balance(store, "zoe")).available == 2_500_000
    assert list(await admin.usage(store, "zoe", 5)) == []
    revoked = await admin.revoke_key(store, key)  # the full key: only its prefix is used
    assert revoked.prefix == record.prefix and revoked.revoked_at


async def test_errors_are_worded_by_the_library(store):
    await admin.create_user(store, "zoe")
    with pytest.raises(admin.AdminError, match="--limit"):
        await admin.usage(store, "zoe", 0)
    with pytest.raises(NotFound, match="user not found"):
        await admin.balance(store, "ghost")
    with pytest.raises(NotFound) as raised:
        await admin.revoke_key(store, "sk-cl-ABCDEFGH" + "x" * 32)
    assert str(raised.value).endswith("sk-cl-ABCDEFGH")
    with pytest.raises(admin.AdminError, match="credit"):
        await admin.topup(store, "zoe", 30, paid_usd=str(MAX_AMOUNT // 30 // 10**6 + 1))
    assert (await admin.balance(store, "zoe")).balance == 0


async def test_open_ledger_refuses_to_create_unless_asked(tmp_path):
    path = str(tmp_path / "none.db")
    with pytest.raises(admin.AdminError, match="no ledger at"):
        async with admin.open_ledger(path):
            pass
    assert not os.path.exists(path)


# -- an empty --models -------------------------------------------------------------------------

def test_key_create_with_empty_models_does_not_fail_open(capsys, tmp_path):
    db = str(tmp_path / "probe.db")
    assert main(["user", "create", "alice", "--db", db]) == 0
    code = main(["key", "create", "alice", "--models", "", "--db", db])
    capsys.readouterr()
    if code != 0:
        return  # refused: fine
    import sqlite3
    with sqlite3.connect(db) as conn:
        (models,), = conn.execute("SELECT models FROM api_keys").fetchall()
    assert models is not None  # NULL means every model
