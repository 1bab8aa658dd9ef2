"""The gateway and every admin command on a PostgreSQL ledger, as on SQLite: commands
through the CLI's own entry point; requests through a served gateway, billed exactly,
with concurrent requests never overdrawing."""

from __future__ import annotations

import json
from dataclasses import replace

import psycopg
import pytest

from proxy.cli.main import main
from proxy.serve import serve
from storage import open_store
from storage.base import MigrationNeeded, SchemaTooNew

from ..conftest import MESSAGE, make_account


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


async def test_a_gateway_on_postgresql_bills_exactly_and_never_overdraws(nursery, config, pg_url):
    running = await nursery.start(serve, replace(config, database_url=pg_url))
    alice = await make_account(running, "alice", credit_micro=10_000_000)
    async with alice.http() as http:
        for _ in range(3):
            response = await http.post("/v1/messages", json={"model": "claude-haiku-4-5", "max_tokens": 64,
                                                              "messages": MESSAGE})
            assert response.status_code == 200
    account = await alice.settled(3)
    rows = await running.gateway.store.usage("alice", 10)
    assert account.balance == 10_000_000 - sum(r.cost for r in rows) and all(r.cost > 0 for r in rows)
    poor = await make_account(running, "poor", credit_micro=0)  # nothing to spend
    body = {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": MESSAGE}
    refused = await poor.post_at_once(body, 5)
    assert {r.status_code for r in refused} == {402}
    many = await alice.post_at_once(body, 20)
    assert {r.status_code for r in many} <= {200, 402}
    settled = await alice.settled(3 + sum(r.status_code == 200 for r in many))
    assert settled.balance >= 0 and settled.held == 0
    store = await open_store(pg_url, create=False, upgrade=False)
    assert await store.check() == []
    await store.aclose()


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
