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
