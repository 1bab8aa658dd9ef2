"""Every admin command on a PostgreSQL ledger, through the CLI's own entry point, and its
schema gates; the both_stores fixture itself. (The gateway's money on PostgreSQL: the
modules marked both_stores, tests/conftest.py.)"""

from __future__ import annotations

import json

import psycopg
import pytest

from proxy.cli.main import main
from storage import open_store
from storage.base import MigrationNeeded, SchemaTooNew

from ..conftest import make_account


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_admin_command_on_postgresql(capsys, pg_url):
    db = ("--db", pg_url)
    code, _, err = run(capsys, "user", "list", *db)
    assert code == 1 and "no ledger at postgresql://postgres@127.0.0.1:5432/" in err  # never created by a read
    assert run(capsys, "user", "create", "ann", *db)[0] == 0
    code, key, _ = run(capsys, "key", "create", "ann", "--name", "laptop", *db)
    assert code == 0 and key.startswith("sk-cl-")
    prefix = key.strip()[:14]
    assert run(capsys, "key", "set", prefix, "--rpm", "10", *db)[0] == 0
    assert run(capsys, "topup", "ann", "--credit", "5", *db)[1] == "ann balance 5.000000 USD\n"
    assert json.loads(run(capsys, "balance", "ann", "--json", *db)[1])["available_usd"] == "5.000000"
    for argv in (("user", "list"), ("key", "list", "ann"), ("usage", "ann"), ("code", "list"), ("upstream", "list")):
        code, out, err = run(capsys, *argv, *db)
        assert code == 0 and "cheaplm:" not in err, (argv, err)
    assert "ann" in run(capsys, "user", "list", *db)[1] and "rpm" in run(capsys, "key", "list", "ann", *db)[1]
    code, out, _ = run(capsys, "code", "create", "--paid", "1", "--count", "2", *db)
    assert code == 0 and len(out.split()) == 2
    assert run(capsys, "user", "disable", "ann", *db)[0] == 0 and run(capsys, "user", "enable", "ann", *db)[0] == 0
    assert run(capsys, "key", "revoke", prefix, *db)[0] == 0
    assert run(capsys, "db", "check", *db)[1] == "ok: 1 accounts, 1 ledger entries, 0 open holds\n"
    assert run(capsys, "db", "migrate", *db)[1].endswith("needs no migration\n")


@pytest.mark.both_stores
async def test_each_both_stores_test_has_an_empty_ledger_of_its_own(app_gateway, request):
    """The ledger fixture under the both_stores marker: the [postgresql] run's gateway is on
    PostgreSQL, in a schema of its own; every run starts empty (a row left by one test,
    or by the other run, would show here)."""
    store = app_gateway.gateway.store
    run = request.node.callspec.params["ledger"]
    assert type(store).__name__ == {"sqlite": "SqliteStore", "postgresql": "PostgresStore"}[run]
    assert await store.list_users() == [] and await store.check() == []
    await make_account(app_gateway, "alice")


async def test_postgresql_schema_gates(pg_url):
    """As on SQLite: a ledger with a migration this version does not know is refused by
    every opener; one missing a migration is refused by admin openers, migrated by serve's."""
    store = await open_store(pg_url)
    await store.aclose()
    conn = psycopg.connect(pg_url, autocommit=True)
    conn.execute("DELETE FROM _migrations WHERE name = '0006_unix_times'")
    conn.execute("DROP INDEX idx_usage_created, idx_usage_account_created, idx_usage_key_created, "
                 "idx_sessions_expires")
    with pytest.raises(MigrationNeeded, match="0006_unix_times"):
        await open_store(pg_url, create=False, upgrade=False)
    store = await open_store(pg_url)
    assert store.applied_migrations == ("0006_unix_times",)
    await store.aclose()
    conn.execute("INSERT INTO _migrations VALUES ('0099_future', 0)")
    conn.close()
    with pytest.raises(SchemaTooNew, match="0099_future"):
        await open_store(pg_url)
