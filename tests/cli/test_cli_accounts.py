"""The accounts commands of the CLI: user create --admin --password-stdin, passwd,
disable/enable, code create/list (run in-process, as tests/cli/test_cli.py does)."""

import io

import pytest
import trio

from proxy.cli.main import main
from storage import open_store

pytestmark = pytest.mark.both_stores  # the ledger fixture: SQLite and PostgreSQL


@pytest.fixture
def db(ledger):
    return ledger


def run(capsys, monkeypatch, *argv, stdin: str = ""):
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def profile(db, username):
    async def read():
        store = await open_store(db)
        try:
            return await store.get_profile(username), await store.list_codes()
        finally:
            await store.aclose()
    return trio.run(read)


def test_users_with_passwords_roles_and_the_disabled_flag(capsys, monkeypatch, db):
    code, out, _ = run(capsys, monkeypatch, "user", "create", "root", "--admin", "--password-stdin",
                       "--email", "root@example.com", "--db", db, stdin="a long password\n")
    assert code == 0 and out == "created admin root\n"
    root, _ = profile(db, "root")
    assert root.is_admin and root.password_hash.startswith("$argon2id$") and root.email == "root@example.com"
    assert run(capsys, monkeypatch, "user", "create", "plain", "--db", db)[:2] == (0, "created user plain\n")
    assert profile(db, "plain")[0].password_hash is None
    code, _, err = run(capsys, monkeypatch, "user", "passwd", "plain", "--password-stdin", "--db", db, stdin="short\n")
    assert code == 1 and err == "cheaplm: the password must be 8 to 1024 characters\n"
    code, out, _ = run(capsys, monkeypatch, "user", "passwd", "plain", "--password-stdin", "--db", db,
                       stdin="another long one\n")
    assert code == 0 and "sessions ended" in out and "another" not in out
    assert run(capsys, monkeypatch, "user", "disable", "plain", "--db", db)[0] == 0
    assert profile(db, "plain")[0].disabled
    out = run(capsys, monkeypatch, "user", "list", "--db", db)[1].splitlines()
    assert out[0].split()[:3] == ["username", "role", "disabled"]
    assert out[1].split()[:3] == ["plain", "user", "yes"] and out[2].split()[:3] == ["root", "admin", "-"]
    assert run(capsys, monkeypatch, "user", "enable", "plain", "--db", db)[0] == 0
    assert not profile(db, "plain")[0].disabled
    code, _, err = run(capsys, monkeypatch, "user", "disable", "ghost", "--db", db)
    assert code == 1 and err == "cheaplm: user not found: ghost\n"


def test_codes(capsys, monkeypatch, db):
    run(capsys, monkeypatch, "user", "create", "ann", "--db", db)
    code, out, err = run(capsys, monkeypatch, "code", "create", "--paid", "10", "--count", "3", "--expires",
                         "2099-01-31", "--db", db)
    codes = out.split()
    assert code == 0 and len(codes) == 3 and all(len(c) >= 20 for c in codes) and "$300.000000" in err
    _, stored = profile(db, "ann")
    assert all(c.paid == 10_000_000 and c.credit == 300_000_000 for c in stored)
    assert not any(c in repr(stored) for c in codes)
    code, out, _ = run(capsys, monkeypatch, "code", "list", "--db", db)
    assert code == 0 and out.count("open") == 3 and "2099-02-01" in out and not any(c in out for c in codes)
    for argv, needle in ((["--paid", "x"], "--paid"), (["--paid", "1", "--count", "0"], "--count"),
                         (["--paid", "1", "--expires", "2001-01-01"], "in the past"), (["--paid", "0"], "positive")):
        code, _, err = run(capsys, monkeypatch, "code", "create", *argv, "--db", db)
        assert code == 1 and needle in err and err.count("\n") == 1, err
