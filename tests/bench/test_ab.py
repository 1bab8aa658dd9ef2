"""bench/ab.py: arms, the figures it compares and its table (the runs themselves start processes)."""

import argparse

import pytest

from bench.ab import Arm, figures, parse_arm, table


def _row(arm, load, ttft50, ttft99, cpu=None, rps=None):
    return {"scenario": "stream", "arm": arm, "load": load, "ttft_p50_ms": ttft50, "ttft_p99_ms": ttft99,
            "cpu_us_per_event": cpu, "cpu_ms_per_request": None, "requests_per_s": rps, "errors": 0}


def test_added_ttft_is_gateway_minus_direct_at_the_same_load():
    rows = [_row("direct", 1, 1.0, 2.0), _row("gateway", 1, 2.5, 4.0, cpu=150.0, rps=10.0),
            _row("direct", 8, 1.5, 3.0), _row("gateway", 8, 2.0, 9.5)]
    got = figures(rows)
    assert got["stream@1 added TTFT p50 ms"] == 1.5 and got["stream@1 added TTFT p99 ms"] == 2.0
    assert got["stream@8 added TTFT p99 ms"] == 6.5 and got["stream@1 CPU us/event"] == 150.0


def test_the_table_shows_every_run_per_arm():
    arms = [Arm("before", None, None), Arm("after", None, None)]
    text = table(arms, {"before": [{"x": 1.0}, {"x": 2.0}], "after": [{"x": 3.0}, {"x": None}]})
    assert text.splitlines()[-1] == "| x | 1 / 2 | 3 / – |"


def test_an_arm_names_a_tree_with_its_environment(tmp_path):
    with pytest.raises(argparse.ArgumentTypeError, match="virtual environment"):
        parse_arm(f"a={tmp_path}")
    with pytest.raises(argparse.ArgumentTypeError, match="LABEL=TREE"):
        parse_arm("just-a-path")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").touch()
    arm = parse_arm(f"after={tmp_path}:{tmp_path}/c.toml")
    assert (arm.label, arm.tree, arm.config.name) == ("after", tmp_path, "c.toml")


def test_on_postgres_must_name_an_arm(tmp_path, capsys):
    from bench.ab import main

    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").touch()
    with pytest.raises(SystemExit):
        main([f"a={tmp_path}", "--on-postgres", "b"])
    assert "--on-postgres names no arm: b" in capsys.readouterr().err


def test_a_bench_database_is_made_fresh_and_dropped():
    psycopg = pytest.importorskip("psycopg")
    from bench.pgdb import DEFAULT_SERVER, fresh_database

    try:
        psycopg.connect(f"{DEFAULT_SERVER}/postgres", connect_timeout=3).close()
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL at {DEFAULT_SERVER} is unreachable: {exc}")
    with fresh_database(DEFAULT_SERVER + "?options=-csynchronous_commit%3Doff") as url:
        name = url.rsplit("/", 1)[1].split("?")[0]
        assert url.endswith("?options=-csynchronous_commit%3Doff")
        with psycopg.connect(url) as conn:
            assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "off"
    with psycopg.connect(f"{DEFAULT_SERVER}/postgres") as admin:
        assert admin.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()[0] == 0
