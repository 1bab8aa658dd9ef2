"""The admin operations as library calls (proxy/accounts/): every CLI command is a thin
call into one of these, and their errors (AccountError, StoreError) are worded there,
for people (the CLI names its flags from ``param``)."""

import os

import pytest

from proxy.accounts.errors import AccountError
from proxy.accounts.ledger import open_ledger
from proxy.accounts.service import Accounts
from proxy.catalog import default_catalog
from proxy.cli.main import main
from proxy.money import MAX_AMOUNT
from storage.base import NotFound
from tests.conftest import raw_ledger

pytestmark = pytest.mark.both_stores  # the ledger fixture: SQLite and PostgreSQL


@pytest.fixture
async def lib(ledger):
    async with open_ledger(ledger, create=True) as store:
        yield Accounts(store)


async def test_reports(lib):
    await lib.create_user("zoe")
    await lib.create_user("amy")
    key, record = await lib.create_key(default_catalog(), "zoe", "laptop")
    await lib.topup("zoe", credit_usd="2.5")
    assert [p.username for p, _ in await lib.users()] == ["amy", "zoe"]
    assert [k.prefix for k in await lib.keys("zoe")] == [record.prefix]
    assert (await lib.account("zoe")).available == 2_500_000
    assert list(await lib.usage("zoe", 5)) == []
    revoked = await lib.revoke_key(key)  # the full key: only its prefix is used
    assert revoked.prefix == record.prefix and revoked.revoked_at


async def test_errors_are_worded_for_people(lib):
    await lib.create_user("zoe")
    with pytest.raises(AccountError, match="limit must be at least 1") as raised:
        await lib.usage("zoe", 0)
    assert raised.value.param == "limit" and "--" not in str(raised.value)
    with pytest.raises(AccountError, match="model list is empty") as raised:
        await lib.create_key(default_catalog(), "zoe", models=[])
    assert raised.value.param == "models" and "--" not in str(raised.value)
    with pytest.raises(NotFound, match="user not found"):
        await lib.account("ghost")
    with pytest.raises(NotFound) as missing:
        await lib.revoke_key("sk-cl-ABCDEFGH" + "x" * 32)
    assert str(missing.value).endswith("sk-cl-ABCDEFGH")
    with pytest.raises(AccountError, match="credit"):
        await lib.topup("zoe", paid_usd=str(MAX_AMOUNT // 30 // 10**6 + 1))
    assert (await lib.account("zoe")).balance == 0


async def test_key_changes_reach_the_hook(lib):
    """Revoking, changing limits and disabling tell the running gateway's cache at once."""
    changed = []
    lib.key_changed = changed.append
    await lib.create_user("zoe")
    _, one = await lib.create_key(default_catalog(), "zoe", "one")
    _, two = await lib.create_key(default_catalog(), "zoe", "two")
    await lib.set_key_limits(one.prefix, {"rpm": 5})
    await lib.revoke_key(two.prefix)
    await lib.set_disabled("zoe", True)
    assert changed[:2] == [one.prefix, two.prefix] and sorted(changed[2:]) == sorted([one.prefix, two.prefix])


async def test_open_ledger_refuses_to_create_unless_asked(tmp_path):
    path = str(tmp_path / "none.db")
    with pytest.raises(AccountError, match="no ledger at"):
        async with open_ledger(path):
            pass
    assert not os.path.exists(path)


# -- an empty --models -------------------------------------------------------------------------

def test_key_create_with_empty_models_does_not_fail_open(capsys, ledger):
    db = ledger
    assert main(["user", "create", "alice", "--db", db]) == 0
    code = main(["key", "create", "alice", "--models", "", "--db", db])
    capsys.readouterr()
    if code != 0:
        return  # refused: fine
    with raw_ledger(db) as conn:
        (models,), = conn.execute("SELECT models FROM api_keys").fetchall()
    assert models is not None  # NULL means every model
