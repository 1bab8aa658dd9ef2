"""`cheaplm db check`: a summary and exit 0 on a sound ledger, one line per problem and
exit 1 on a damaged one."""

import sqlite3

from proxy.cli.main import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_db_check_on_a_sound_then_damaged_ledger(capsys, tmp_path):
    db = str(tmp_path / "ledger.db")
    assert run(capsys, "user", "create", "ann", "--db", db)[0] == 0
    assert run(capsys, "user", "create", "bo", "--db", db)[0] == 0
    assert run(capsys, "topup", "ann", "--credit", "5", "--db", db)[0] == 0
    assert run(capsys, "topup", "ann", "--credit", "1", "--db", db)[0] == 0
    code, out, err = run(capsys, "db", "check", "--db", db)
    assert (code, out, err) == (0, "ok: 2 accounts, 2 ledger entries, 0 open holds\n", "")
    raw = sqlite3.connect(db, isolation_level=None)
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


def test_db_check_fails_on_a_balance_below_zero_and_a_charge_above_its_hold(capsys, tmp_path):
    db = str(tmp_path / "ledger.db")
    assert run(capsys, "user", "create", "ann", "--db", db)[0] == 0
    raw = sqlite3.connect(db, isolation_level=None)
    # a charge the ledger itself could not have made: 30 on a hold of 10, taking ann to -30
    raw.execute("INSERT INTO holds (account_id, amount, request_id, state, created_at) "
                "VALUES (1, 10, 'r1', 'settled', '2026-01-01')")
    raw.execute("INSERT INTO ledger (account_id, delta, balance_after, kind, ref, created_at) "
                "VALUES (1, -30, -30, 'charge', 'r1', '2026-01-01')")
    raw.execute("INSERT INTO usage (request_id, key_id, account_id, model, endpoint, stream, status, cost, "
                "created_at) VALUES ('r1', 1, 1, 'm', 'messages', 0, 200, 30, '2026-01-01')")
    raw.execute("INSERT INTO key_spend (key_id, day, spent) VALUES (1, '2026-01-01', 30)")
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
