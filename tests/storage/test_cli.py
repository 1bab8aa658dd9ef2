"""`cheaplm db check`: a summary and exit 0 on a sound ledger, one line per problem and
exit 1 on a damaged one. `cheaplm db migrate`, and admin commands refusing a ledger that
needs a migration (or was made by a newer CheapLM)."""

import sqlite3

import pytest

from proxy.cli.main import main

from ..conftest import raw_ledger
from .helpers import sqlite_ledger_at


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.both_stores
def test_db_check_on_a_sound_then_damaged_ledger(capsys, ledger):
    db = ledger
    assert run(capsys, "user", "create", "ann", "--db", db)[0] == 0
    assert run(capsys, "user", "create", "bo", "--db", db)[0] == 0
    assert run(capsys, "topup", "ann", "--credit", "5", "--db", db)[0] == 0
    assert run(capsys, "topup", "ann", "--credit", "1", "--db", db)[0] == 0
    code, out, err = run(capsys, "db", "check", "--db", db)
    assert (code, out, err) == (0, "ok: 2 accounts, 2 ledger entries, 0 open holds\n", "")
    raw = raw_ledger(db)
    raw.execute("UPDATE accounts SET balance = balance - 1 WHERE username = 'ann'")
    raw.execute("UPDATE accounts SET held = 7 WHERE username = 'bo'")
    raw.close()
    code, out, err = run(capsys, "db", "check", "--db", db)
    assert code == 1 and err == ""
    assert out.splitlines() == [
        "account ann: balance 5999999 but its ledger entries sum to 6000000",
        "account ann: balance 5999999 but its last ledger entry (2) says 6000000",
        "account bo: held 7 but its open holds add up to 0",
        "account bo: available balance -7 is below zero (held 7)",
    ]


@pytest.mark.both_stores
def test_db_check_fails_on_a_balance_below_zero_and_a_charge_above_its_hold(capsys, ledger):
    db = ledger
    assert run(capsys, "user", "create", "ann", "--db", db)[0] == 0
    raw = raw_ledger(db)
    # a charge the ledger itself could not have made: 30 on a hold of 10, taking ann to -30
    raw.execute("INSERT INTO holds (account_id, amount, request_id, state, created_at) "
                "VALUES (1, 10, 'r1', 'settled', 1767225600)")  # (2026-01-01, unix seconds)
    raw.execute("INSERT INTO ledger (account_id, delta, balance_after, kind, ref, created_at) "
                "VALUES (1, -30, -30, 'charge', 'r1', 1767225600)")
    raw.execute("INSERT INTO usage (request_id, key_id, account_id, model, endpoint, stream, status, cost, "
                "created_at) VALUES ('r1', 1, 1, 'm', 'messages', 0, 200, 30, 1767225600)")
    raw.execute("INSERT INTO key_spend (key_id, day, spent) VALUES (1, 20454, 30)")  # its day number
    raw.execute("UPDATE accounts SET balance = -30")
    raw.close()
    code, out, err = run(capsys, "db", "check", "--db", db)
    assert code == 1 and out.splitlines() == [
        "account ann: balance -30 is below zero",
        "request r1: charged 30, more than its hold of 10",
    ]


def test_db_check_without_a_ledger_is_one_line(capsys, tmp_path):
    code, out, err = run(capsys, "db", "check", "--db", str(tmp_path / "none.db"))
    assert code == 1 and out == "" and err.count("\n") == 1 and "no ledger at" in err
    assert not (tmp_path / "none.db").exists()
    code, out, err = run(capsys, "db", "check", "--db", str(tmp_path / "missing" / "x.db"))
    assert code == 1 and err.count("\n") == 1


def test_an_unopenable_ledger_is_one_line_for_every_command(capsys, tmp_path):
    code, out, err = run(capsys, "user", "list", "--db", str(tmp_path / "missing" / "x.db"))
    assert code == 1 and out == "" and err.count("\n") == 1 and "no ledger at" in err


def _older_ledger(path: str) -> None:
    """A ledger as 0005 left it (one user), before 0006."""
    db = sqlite_ledger_at(path, 5)
    db.execute("INSERT INTO accounts (username, balance, held, created_at) "
               "VALUES ('ann', 0, 0, '2026-11-01T10:00:00.000+00:00')")
    db.conn.close()


def test_admin_commands_refuse_a_ledger_that_needs_a_migration_and_db_migrate_applies_it(capsys, tmp_path):
    db = str(tmp_path / "old.db")
    _older_ledger(db)
    from storage.sqlite.migrations import MIGRATIONS
    pending = [name for name, _ in MIGRATIONS][5:]  # everything after 0005_accounts
    for argv in (("user", "list"), ("user", "create", "bo"), ("db", "check"), ("topup", "ann", "--credit", "1")):
        code, out, err = run(capsys, *argv, "--db", db)
        assert (code, out) == (1, "") and err.count("\n") == 1, argv
        assert f"needs {len(pending)} schema migration(s) ({', '.join(pending)}): run `cheaplm db migrate`" in err
    assert [n for (n,) in sqlite3.connect(db).execute("SELECT name FROM _migrations")][-1] == "0005_accounts"
    code, out, err = run(capsys, "db", "migrate", "--db", db)
    assert (code, err) == (0, "") and out == f"applied {len(pending)} migration(s) to {db}: {', '.join(pending)}\n"
    assert run(capsys, "db", "migrate", "--db", db)[1] == f"the ledger at {db} needs no migration\n"
    code, out, err = run(capsys, "user", "list", "--db", db)
    assert code == 0 and "ann" in out and "2026-11-01T10:00:00.000+00:00" in out


def test_a_ledger_newer_than_this_version_is_refused_by_every_command(capsys, tmp_path):
    db = str(tmp_path / "new.db")
    assert run(capsys, "user", "create", "ann", "--db", db)[0] == 0
    sqlite3.connect(db, isolation_level=None).execute("INSERT INTO _migrations VALUES ('0099_future', 'then')")
    for argv in (("user", "list"), ("db", "migrate"), ("serve", "--port", "0")):
        code, out, err = run(capsys, *argv, "--db", db)
        assert code == 1 and err.count("\n") == 1, (argv, err)
        assert "has a newer schema than this CheapLM knows (0099_future): upgrade CheapLM" in err


def test_db_migrate_without_a_ledger_creates_none(capsys, tmp_path):
    code, out, err = run(capsys, "db", "migrate", "--db", str(tmp_path / "none.db"))
    assert code == 1 and "no ledger at" in err and not (tmp_path / "none.db").exists()

