"""Every CLI failure is one line on stderr starting with ``cheaplm: ``, a non-zero exit, no
traceback, and nothing half-done (no ledger created, nothing written)."""

import os
import socket
import sqlite3

import pytest

from proxy.cli.main import main
from storage.base import StoreBusy, StoreUnavailable


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: --help, and usage errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(err: str) -> str:
    assert err.startswith("cheaplm: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def db(tmp_path, capsys):
    path = str(tmp_path / "ledger.db")
    assert run(capsys, "user", "create", "bob", "--db", path)[0] == 0
    return path


def ledger_rows(path: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM ledger").fetchone()[0]


# -- 1. a ledger that cannot be opened ---------------------------------------------------

def test_missing_directory(capsys, tmp_path):
    path = tmp_path / "nope" / "x.db"
    code, _, err = run(capsys, "user", "create", "bob", "--db", str(path))
    assert code == 1 and one_line(err).startswith(f"cheaplm: cannot open the ledger at {path}: ")
    assert "does not exist" in err and not (tmp_path / "nope").exists()


def test_path_under_a_regular_file(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    code, _, err = run(capsys, "user", "create", "bob", "--db", str(tmp_path / "file" / "x.db"))
    assert code == 1 and "cannot open the ledger" in one_line(err) and "not a directory" in err


def test_directory_as_ledger(capsys, tmp_path):
    code, _, err = run(capsys, "user", "list", "--db", str(tmp_path))
    assert code == 1 and "cannot open the ledger" in one_line(err) and "is a directory" in err


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs procfs")
def test_unwritable_directory(capsys):
    # The tests run as root, for whom chmod 0555 is no obstacle (CAP_DAC_OVERRIDE). procfs
    # refuses to create files for every user, root included: a reliable unwritable directory.
    code, _, err = run(capsys, "user", "create", "bob", "--db", "/proc/cheaplm-test.db")
    assert code == 1 and one_line(err).startswith("cheaplm: cannot open the ledger at /proc/cheaplm-test.db: ")
    assert not os.path.exists("/proc/cheaplm-test.db")


def test_corrupt_ledger(capsys, tmp_path):
    path = tmp_path / "junk.db"
    junk = os.urandom(8192)
    path.write_bytes(junk)
    for argv in (("balance", "bob"), ("user", "create", "bob"), ("topup", "bob", "--paid", "1")):
        code, _, err = run(capsys, *argv, "--db", str(path))
        assert code == 1 and one_line(err).startswith(f"cheaplm: cannot open the ledger at {path}: ")
        assert "not a database" in err
    assert path.read_bytes() == junk and sorted(os.listdir(tmp_path)) == ["junk.db"]


# -- 2. ports ----------------------------------------------------------------------------

@pytest.mark.parametrize("port", ["99999", "-1", "abc", "65536"])
@pytest.mark.parametrize("command", ["serve", "simulator"])
def test_port_out_of_range(capsys, tmp_path, command, port):
    code, _, err = run(capsys, command, "--port", port, *(("--db", str(tmp_path / "x.db")) if command == "serve" else ()))
    assert code == 2 and "--port" in one_line(err) and "65535" in err
    assert not (tmp_path / "x.db").exists()


def test_port_out_of_range_from_the_environment(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CHEAPLM_PORT", "99999")
    code, _, err = run(capsys, "serve", "--db", str(tmp_path / "x.db"))
    assert code == 1 and "port" in one_line(err) and "65535" in err
    assert not (tmp_path / "x.db").exists()


def test_port_in_use(capsys, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run(capsys, "serve", "--port", str(port), "--db", str(tmp_path / "x.db"))
    assert code == 1 and one_line(err) == f"cheaplm: cannot listen on 127.0.0.1:{port}: address already in use\n"


def test_simulator_port_in_use(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run(capsys, "simulator", "--port", str(port))
    assert code == 1 and one_line(err) == f"cheaplm: cannot listen on 127.0.0.1:{port}: address already in use\n"


def test_usage_errors_are_one_line(capsys, db):
    for argv in (("topup",), ("frobnicate",), ("usage", "bob", "--limit", "x"), ()):
        code, _, err = run(capsys, *argv)
        assert code == 2 and one_line(err) and "--help" in err


# -- 3. amounts --------------------------------------------------------------------------

@pytest.mark.parametrize("argv,needle", [
    (("--paid", "1e30"), "1000000000"),
    (("--credit", "1e30"), "1000000000"),
    (("--credit", "1e999999"), "1000000000"),
    (("--paid", "100000000"), "credit"),          # $100M paid x 30 = $3B of credit
    (("--credit", "1000000000.000001"), "1000000000"),
    (("--paid", "-1"), "positive"),
    (("--paid", "0"), "positive"),
    (("--paid", "nan"), "not a USD amount"),
    (("--paid", "inf"), "not a USD amount"),
    (("--credit=-inf",), "not a USD amount"),
    (("--paid", "0.0000001"), "micro-dollar"),
])
def test_bad_amounts_write_nothing(capsys, db, argv, needle):
    code, _, err = run(capsys, "topup", "bob", *argv, "--db", db)
    assert code == 1 and needle in one_line(err)
    assert ledger_rows(db) == 0


def test_largest_amount_is_accepted(capsys, db):
    code, out, _ = run(capsys, "topup", "bob", "--credit", "1000000000", "--db", db)
    assert code == 0 and "1000000000.000000" in out


# -- 4. a full key given to key revoke ---------------------------------------------------

def test_revoke_by_full_key_never_echoes_the_secret(capsys, caplog, db):
    key = run(capsys, "key", "create", "bob", "--db", db)[1].strip()
    code, out, err = run(capsys, "key", "revoke", key, "--db", db)
    assert code == 0 and out == f"revoked {key[:14]} (bob)\n"
    assert key[14:] not in out + err + caplog.text
    _, listing, _ = run(capsys, "key", "list", "bob", "--db", db)
    row = next(line for line in listing.splitlines() if line.startswith(key[:14]))
    assert not row.rstrip().endswith(" -")  # the revoked column holds a time


def test_revoke_unknown_full_key(capsys, caplog, db):
    key = "sk-cl-" + "A" * 8 + "s3cr3t" * 6 + "zz"
    code, _, err = run(capsys, "key", "revoke", key, "--db", db)
    assert code == 1 and "no key" in one_line(err) and key[:14] in err
    assert key[14:] not in err + caplog.text and "s3cr3t" not in err


# -- 6. the default ledger is not created by accident ------------------------------------

@pytest.mark.parametrize("argv", [
    ("balance", "bob"), ("user", "list"), ("usage", "bob"), ("topup", "bob", "--paid", "1"),
    ("key", "create", "bob"), ("key", "list", "bob"), ("key", "revoke", "sk-cl-00000000"),
])
def test_no_ledger_is_created_by_other_commands(capsys, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHEAPLM_DB", raising=False)
    code, _, err = run(capsys, *argv)
    assert code == 1 and one_line(err) == (
        f"cheaplm: no ledger at {tmp_path / 'cheaplm.db'} (run `cheaplm serve` or `cheaplm user create` "
        "first, or pass --db)\n")
    assert os.listdir(tmp_path) == []


def test_invalid_username_creates_no_ledger(capsys, tmp_path):
    code, _, err = run(capsys, "user", "create", "bad name!", "--db", str(tmp_path / "x.db"))
    assert code == 1 and "invalid username" in one_line(err) and os.listdir(tmp_path) == []


def test_help_says_where_the_ledger_is(capsys):
    for argv in (("--help",), ("serve", "--help"), ("balance", "--help")):
        code, out, _ = run(capsys, *argv)
        out = " ".join(out.split())
        assert code == 0 and "./cheaplm.db" in out and "CHEAPLM_DB" in out and "--db" in out


# -- 7. the bench's help -----------------------------------------------------------------

def test_help_points_at_the_real_bench_docs(capsys):
    _, out, _ = run(capsys, "--help")
    out = " ".join(out.split())  # as argparse wrapped it
    assert "bench/README" not in out and "cheaplm bench --help" in out and "Benchmarks" in out


def test_ctrl_c_on_serve_is_a_quiet_exit(capsys, tmp_path, monkeypatch):
    import trio

    import proxy.serve

    async def interrupted(config, **_):
        async with trio.open_nursery():  # as serve's nursery wraps it: BaseExceptionGroup([KeyboardInterrupt])
            raise KeyboardInterrupt

    monkeypatch.setattr(proxy.serve, "serve", interrupted)
    code, _, err = run(capsys, "serve", "--db", str(tmp_path / "x.db"))
    assert code == 130 and err == ""


@pytest.mark.parametrize("error,start", [
    (StoreUnavailable("cannot open the ledger at DB: the database is read-only"), "cannot open the ledger at "),
    (StoreUnavailable("cannot open the ledger at DB: the database file is damaged"), "cannot open the ledger at "),
    (StoreBusy("the ledger is busy: database is locked (waited 5 s)"), "the ledger at "),
])
def test_other_ledger_errors_are_one_line(capsys, monkeypatch, db, error, start):
    error.args = (error.args[0].replace("DB", db),)
    from proxy.accounts.service import Accounts

    async def failing(self, username):
        raise error

    monkeypatch.setattr(Accounts, "account", failing)
    code, _, err = run(capsys, "balance", "bob", "--db", db)
    assert code == 1 and one_line(err).startswith(f"cheaplm: {start}") and db in err and str(error) in err
