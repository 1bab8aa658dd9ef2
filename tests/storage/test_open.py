"""open_store(url): the backend chosen by the location's scheme; bare paths are SQLite
files as always; backends not built in, unknown schemes and malformed URLs are one
StoreConfigError line (and one ``cheaplm: ...`` line from the CLI), never a password."""

import os

import pytest

from proxy.cli.main import main
from storage import OPENERS, describe_location, open_store, parse_location
from storage.base import StoreConfigError, StoreUnavailable


@pytest.mark.parametrize("text,backend,target", [
    ("ledger.db", "sqlite", "ledger.db"),
    ("/var/lib/cheaplm/ledger.db", "sqlite", "/var/lib/cheaplm/ledger.db"),
    (":memory:", "sqlite", ":memory:"),
    ("sqlite:///var/lib/cheaplm/ledger.db", "sqlite", "/var/lib/cheaplm/ledger.db"),
    ("sqlite:////var/lib/cheaplm/ledger.db", "sqlite", "/var/lib/cheaplm/ledger.db"),  # SQLAlchemy's absolute
    ("sqlite://data/ledger.db", "sqlite", "data/ledger.db"),
    ("SQLite://ledger.db", "sqlite", "ledger.db"),
    ("sqlite://:memory:", "sqlite", ":memory:"),
    ("postgresql://u:pw@db.example:5432/cheaplm", "postgresql", "postgresql://u:pw@db.example:5432/cheaplm"),
    ("postgres://db.example/cheaplm", "postgresql", "postgres://db.example/cheaplm"),
])
def test_locations(text, backend, target):
    location = parse_location(text)
    assert (location.backend, location.target) == (backend, target)
    assert "pw" not in location.shown
    assert location.file == (target if backend == "sqlite" and target != ":memory:" else None)


@pytest.mark.parametrize("text,needle", [
    ("", "empty"), ("sqlite://", "names no file"), ("sqlite:///", "names no file"),
    ("sqlite:///x.db?mode=ro", "not supported"), ("sqlite:///x.db#frag", "not supported"),
])
def test_malformed_locations(text, needle):
    with pytest.raises(StoreConfigError, match=needle):
        parse_location(text)


async def test_a_sqlite_url_and_its_bare_path_open_one_ledger(tmp_path):
    path = str(tmp_path / "one.db")
    store = await open_store(f"sqlite://{path}")
    await store.create_user("u")
    await store.aclose()
    assert os.path.exists(path)
    again = await open_store(path)
    assert [a.username for a in await again.list_users()] == ["u"]
    await again.aclose()


@pytest.mark.parametrize("url", ["postgresql://cheaplm:s3cret@127.0.0.1:1/ledger", "postgres://127.0.0.1:1/ledger"])
async def test_an_unreachable_postgresql_is_one_line_without_the_password(url):
    with pytest.raises(StoreUnavailable) as refused:
        await open_store(url, instance_id="i", busy_timeout=1)
    message = str(refused.value)
    assert message.startswith("cannot open the ledger at postgres") and "127.0.0.1" in message
    assert "s3cret" not in message and "\n" not in message
    assert "postgresql" in OPENERS


async def test_an_unknown_scheme_is_refused():
    with pytest.raises(StoreConfigError, match="unknown scheme 'mysql'") as refused:
        await open_store("mysql://root:hunter2@localhost/ledger")
    assert "hunter2" not in str(refused.value) and "sqlite://" in str(refused.value)


def test_describe_location_never_shows_a_password(tmp_path):
    assert describe_location("postgresql://u:pw@h:1/d") == "postgresql://u@h:1/d"
    assert describe_location("ledger.db") == os.path.abspath("ledger.db")
    assert describe_location("sqlite://") == "sqlite://..."


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("argv", [("user", "list"), ("user", "create", "ann"), ("db", "check"),
                                  ("serve", "--port", "0")])
def test_the_cli_says_an_unreachable_postgresql_in_one_line(capsys, argv):
    code, out, err = run(capsys, *argv, "--db", "postgresql://cheaplm:s3cret@127.0.0.1:1/ledger")
    assert code == 1 and out == "" and err.count("\n") == 1 and err.startswith("cheaplm: ")
    assert "cannot open the ledger at postgresql://cheaplm@127.0.0.1:1/ledger" in err and "s3cret" not in err


def test_the_cli_takes_sqlite_urls_from_the_flag_and_the_environment(capsys, tmp_path, monkeypatch):
    path = tmp_path / "cli.db"
    assert run(capsys, "user", "create", "ann", "--db", f"sqlite://{path}")[0] == 0
    monkeypatch.setenv("CHEAPLM_DB", f"sqlite://{path}")
    code, out, err = run(capsys, "db", "check")
    assert (code, out) == (0, "ok: 1 accounts, 0 ledger entries, 0 open holds\n")
    code, out, err = run(capsys, "user", "list", "--db", f"sqlite://{tmp_path}/none.db")
    assert code == 1 and f"no ledger at {tmp_path}/none.db" in err and not (tmp_path / "none.db").exists()
    code, out, err = run(capsys, "user", "list", "--db", "redis://cache/0")
    assert code == 1 and err.count("\n") == 1 and "unknown scheme 'redis'" in err
