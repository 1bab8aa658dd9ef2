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
