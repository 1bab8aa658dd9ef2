"""The cheaplm admin CLI, run in-process (each command runs its own trio.run)."""

import json

import pytest

from proxy.cli.main import main
from tests.conftest import raw_ledger

# The commands that write and read the store run on both stores (the ledger fixture); the
# one-line refusals of bad arguments on SQLite only (the store answers few of them).


@pytest.fixture
def db(ledger):
    return ledger


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.both_stores
def test_user_key_topup_balance_usage(capsys, db):
    assert run(capsys, "user", "create", "carol", "--db", db)[0] == 0
    code, _, err = run(capsys, "user", "create", "carol", "--db", db)
    assert code == 1 and err.count("\n") == 1 and "already exists" in err
    code, out, err = run(capsys, "key", "create", "carol", "--db", db, "--name", "laptop", "--models",
                         "claude-sonnet-4-5,claude-haiku-4.5", "--no-stream", "--ip", "10.0.0.0/8", "--ip", "::1")
    key = out.strip()
    assert code == 0 and key.startswith("sk-cl-") and len(key) >= 6 + 32 and "shown once" in err
    code, out, _ = run(capsys, "key", "list", "carol", "--db", db)
    assert key[:14] in out and key not in out and "claude-sonnet-4.5,claude-haiku-4.5" in out
    assert "10.0.0.0/8,::1/128" in out and "laptop" in out
    assert run(capsys, "topup", "carol", "--paid", "10", "--db", db)[0] == 0
    assert run(capsys, "topup", "carol", "--credit", "0.000001", "--db", db)[0] == 0
    code, out, _ = run(capsys, "balance", "carol", "--db", db, "--json")
    assert json.loads(out)["balance_usd"] == "300.000001"
    code, out, _ = run(capsys, "balance", "carol", "--db", db)
    assert out.split("\n")[0].split() == ["username", "balance_usd", "held_usd", "available_usd"]
    code, out, _ = run(capsys, "usage", "carol", "--db", db, "--limit", "5")
    assert code == 0 and "(none)" in out
    code, out, _ = run(capsys, "key", "revoke", key[:14], "--db", db)
    assert code == 0 and "revoked" in out
    code, out, _ = run(capsys, "user", "list", "--db", db)
    assert "carol" in out and "300.000001" in out


@pytest.mark.both_stores
def test_topup_records_paid_and_value(capsys, db, tmp_path):
    run(capsys, "user", "create", "dan", "--db", db)
    config = tmp_path / "c.toml"
    config.write_text('value_multiplier = "12.5"\n')
    assert run(capsys, "topup", "dan", "--paid", "0.03", "--db", db, "--config", str(config))[0] == 0
    row = raw_ledger(db).execute("SELECT delta, paid, kind FROM ledger").fetchone()
    assert row == (375_000, 30_000, "topup")


@pytest.mark.parametrize("argv,needle", [
    (("topup", "ghost", "--paid", "1"), "user not found"),
    (("topup", "erin", "--paid", "abc"), "not a USD amount"),
    (("topup", "erin", "--paid", "-1"), "positive"),
    (("topup", "erin"), "exactly one"),
    (("topup", "erin", "--paid", "1", "--credit", "1"), "exactly one"),
    (("key", "create", "erin", "--models", "gpt-4"), "unknown model"),
    (("key", "create", "erin", "--ip", "not-an-ip"), "--ip: invalid network"),
    (("key", "create", "ghost"), "user not found"),
    (("key", "revoke", "sk-cl-nothere0"), "no key"),
    (("user", "create", "bad name!"), "invalid username"),
    (("balance", "ghost"), "user not found"),
    (("usage", "erin", "--limit", "0"), "--limit"),
])
def test_bad_input_is_one_line_and_nonzero(capsys, db, argv, needle):
    run(capsys, "user", "create", "erin", "--db", db)
    code, _, err = run(capsys, *argv, "--db", db)
    assert code != 0 and needle in err and err.count("\n") == 1


def test_bad_config_file(capsys, db, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("port = 'x'\n")
    code, _, err = run(capsys, "user", "list", "--db", db, "--config", str(bad))
    assert code == 1 and "port" in err


def _limits_row(out: str, prefix: str) -> dict[str, str]:
    header, *rows = out.splitlines()
    line = next(r for r in rows if r.startswith(prefix))
    return dict(zip(header.split(), line.split()))


@pytest.mark.both_stores
def test_key_limits_create_set_list(capsys, db):
    run(capsys, "user", "create", "fay", "--db", db)
    code, out, _ = run(capsys, "key", "create", "fay", "--db", db, "--rpm", "10", "--tpm", "20000",
                       "--concurrency", "2", "--daily-usd", "5", "--monthly-usd", "$100.5")
    prefix = out.strip()[:14]
    assert code == 0
    _, out, _ = run(capsys, "key", "list", "fay", "--db", db)
    row = _limits_row(out, prefix)
    assert (row["rpm"], row["tpm"], row["concurrency"], row["daily_usd"], row["monthly_usd"]) == (
        "10", "20000", "2", "5.000000", "100.500000")
    code, out, _ = run(capsys, "key", "set", prefix, "--db", db, "--rpm", "none", "--daily-usd", "0",
                       "--concurrency", "7")
    assert code == 0 and out.strip() == (f"{prefix} (fay): rpm=- tpm=20000 concurrency=7 daily_usd=- "
                                         "monthly_usd=100.500000")
    _, out, _ = run(capsys, "key", "list", "fay", "--db", db)
    row = _limits_row(out, prefix)
    assert (row["rpm"], row["concurrency"], row["daily_usd"]) == ("-", "7", "-")
    code, out, _ = run(capsys, "key", "create", "fay", "--db", db)  # no limits
    _, listing, _ = run(capsys, "key", "list", "fay", "--db", db)
    assert [_limits_row(listing, out.strip()[:14])[c] for c in ("rpm", "tpm", "concurrency", "daily_usd",
                                                                "monthly_usd")] == ["-"] * 5


@pytest.mark.parametrize("argv,needle", [
    (("key", "create", "gil", "--rpm", "ten"), "--rpm must be a whole number from 1"),
    (("key", "create", "gil", "--tpm", "-5"), "--tpm must be a whole number from 1"),
    (("key", "create", "gil", "--concurrency", "1.5"), "--concurrency must be a whole number"),
    (("key", "create", "gil", "--daily-usd", "-1"), "--daily-usd must be a positive USD amount"),
    (("key", "create", "gil", "--monthly-usd", "0.0000001"), "--monthly-usd: more precise than a micro-dollar"),
    (("key", "create", "gil", "--monthly-usd", "1e99"), "--monthly-usd: more than"),
    (("key", "set", "sk-cl-nothere1", "--rpm", "3"), "no key with prefix sk-cl-nothere1"),
    (("key", "set", "sk-cl-nothere1"), "nothing to set"),
])
def test_bad_key_limits_are_one_line_and_change_nothing(capsys, db, argv, needle):
    run(capsys, "user", "create", "gil", "--db", db)
    code, _, err = run(capsys, *argv, "--db", db)
    assert code == 1 and err.count("\n") == 1 and err.startswith("cheaplm: ") and needle in err, err
    _, out, _ = run(capsys, "key", "list", "gil", "--db", db)
    assert out.strip() == "(none)"
