"""The CLI's output (proxy/cli/output.py) and its money commands: every read command
prints one JSON document with --json and a table otherwise; nothing prints a control
character raw; credit and correction with a reason and the operator as actor."""

from __future__ import annotations

import json

import pytest
import trio

from proxy.cli.main import main
from storage import open_store
from tests.conftest import raw_ledger

pytestmark = pytest.mark.both_stores  # the ledger fixture: SQLite and PostgreSQL

READS = (("balance", "zoe"), ("usage", "zoe"), ("user", "list"), ("key", "list", "zoe"), ("code", "list"),
         ("upstream", "list"), ("db", "check"))


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def db(ledger, capsys):
    path = ledger
    assert run(capsys, "user", "create", "zoe", "--db", path)[0] == 0
    assert run(capsys, "key", "create", "zoe", "--db", path)[0] == 0
    assert run(capsys, "code", "create", "--paid", "1", "--db", path)[0] == 0
    return path


@pytest.mark.parametrize("argv", READS, ids=" ".join)
def test_every_read_command_prints_one_json_document(capsys, db, argv):
    code, out, _ = run(capsys, *argv, "--db", db, "--json")
    assert code == 0
    document = json.loads(out)  # one document, nothing else on stdout
    assert isinstance(document, dict) and out.count("\n") == 1
    code, table, _ = run(capsys, *argv, "--db", db)
    assert code == 0 and not table.lstrip().startswith("{")


def test_json_documents_carry_the_values(capsys, db):
    assert json.loads(run(capsys, "balance", "zoe", "--db", db, "--json")[1]) == {
        "username": "zoe", "balance_usd": "0.000000", "held_usd": "0.000000", "available_usd": "0.000000"}
    [key] = json.loads(run(capsys, "key", "list", "zoe", "--db", db, "--json")[1])["data"]
    assert key["name"] == "default" and key["models"] is None and key["limits"]["rpm"] is None
    assert json.loads(run(capsys, "db", "check", "--db", db, "--json")[1])["ok"] is True
    [user] = json.loads(run(capsys, "user", "list", "--db", db, "--json")[1])["data"]
    assert user["username"] == "zoe" and user["disabled"] is False
    [listed] = json.loads(run(capsys, "code", "list", "--db", db, "--json")[1])["data"]
    assert listed["status"] == "open"


def test_odd_names_already_stored_are_shown_escaped(capsys, db):
    async def odd() -> None:
        store = await open_store(db)
        try:
            await store.create_user("root\n")  # from before names were checked
            await store.create_key("zoe", "sk-cl-ODDNAME1", "0" * 64, "\x1b[31mred\x07", None, True, (), None)
        finally:
            await store.aclose()
    trio.run(odd)
    _, users, _ = run(capsys, "user", "list", "--db", db)
    _, keys, _ = run(capsys, "key", "list", "zoe", "--db", db)
    assert "root\\n" in users and "\x1b" not in keys and "\\x1b[31mred\\x07" in keys
    assert all(ch == "\n" or ch.isprintable() for ch in users + keys)
    _, as_json, _ = run(capsys, "key", "list", "zoe", "--db", db, "--json")
    assert "\x1b" not in as_json and "\x1b[31mred\x07" in [k["name"] for k in json.loads(as_json)["data"]]


def test_names_are_checked_with_the_flag_named(capsys, db):
    code, _, err = run(capsys, "key", "create", "zoe", "--name", "\x1b[2Jwipe", "--db", db)
    assert code == 1 and err.startswith("cheaplm: --name: invalid key name") and "\x1b" not in err
    code, _, err = run(capsys, "user", "create", "eve\n", "--db", db)
    assert code == 1 and "invalid username" in err and err.count("\n") == 1
    code, _, err = run(capsys, "key", "create", "zoe", "--models", " , ", "--db", db)
    assert code == 1 and err.startswith("cheaplm: --models: the model list is empty")


def test_credit_and_correction_with_reason_and_actor(capsys, db):
    assert run(capsys, "topup", "zoe", "--paid", "1", "--db", db)[0] == 0  # $30 of API value
    code, out, _ = run(capsys, "credit", "zoe", "2.5", "--reason", "goodwill", "--db", db)
    assert code == 0 and "balance 32.500000" in out
    code, out, _ = run(capsys, "credit", "zoe", "--", "-2.50", "--reason", "duplicate payment", "--db", db)
    assert code == 0 and "corrected -2.500000" in out and "balance 30.000000" in out
    code, _, err = run(capsys, "credit", "zoe", "-30.000001", "--reason", "too much", "--db", db)
    assert code == 1 and "below zero" in err and "30.000000 USD is available" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as usage:
        main(["credit", "zoe", "1", "--db", db])
    assert usage.value.code == 2 and "--reason" in capsys.readouterr().err
    code, _, err = run(capsys, "credit", "zoe", "1", "--reason", "  ", "--db", db)
    assert code == 1 and "--reason: a reason is required" in err
    code, _, err = run(capsys, "credit", "zoe", "0", "--reason", "x", "--db", db)
    assert code == 1 and "non-zero" in err
    rows = raw_ledger(db).execute("SELECT kind, delta, paid, reason, actor FROM ledger ORDER BY id").fetchall()
    assert [r[:4] for r in rows] == [("topup", 30_000_000, 1_000_000, None), ("credit", 2_500_000, None, "goodwill"),
                                     ("correction", -2_500_000, None, "duplicate payment")]
    assert len({r[4] for r in rows}) == 1 and rows[0][4].startswith("cli:")
    assert json.loads(run(capsys, "db", "check", "--db", db, "--json")[1])["ok"] is True


def test_bench_runs_as_its_own_process(capfd):
    """The CLI never imports bench/: `cheaplm bench` runs `python -m bench`."""
    assert main(["bench", "--help"]) == 0
    assert "usage" in capfd.readouterr().out.lower()
