"""``workers``: the setting, its variable and the flag; a single worker is no supervisor."""

from __future__ import annotations

import socket

import pytest

from proxy.cli.main import main
from proxy.config import ConfigError, load_config


def test_the_setting_the_variable_and_the_flag(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("workers = 3\n")
    assert load_config(env={}).workers == 1
    assert load_config(str(toml), env={}).workers == 3
    assert load_config(str(toml), env={"CHEAPLM_WORKERS": "4"}).workers == 4
    assert load_config(str(toml), env={"CHEAPLM_WORKERS": "4"}, workers=2).workers == 2


@pytest.mark.parametrize("value", ["0", "-1", "257", "two"])
def test_out_of_range_is_refused(value):
    with pytest.raises(ConfigError, match="workers"):
        load_config(env={"CHEAPLM_WORKERS": value})


@pytest.mark.parametrize("value", ["0", "x", "1000"])
def test_the_flag_refuses_what_is_not_a_number_of_processes(value, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["serve", "--workers", value])
    assert exit.value.code == 2 and "--workers: must be a number of processes, 1-256" in capsys.readouterr().err


def test_workers_refuse_a_ledger_they_cannot_share(capsys):
    assert main(["serve", "--workers", "2", "--port", "0", "--db", ":memory:"]) == 1
    assert "cheaplm: workers share one ledger: an in-memory one cannot be shared" in capsys.readouterr().err


def test_a_port_in_use_is_one_line_before_any_worker_starts(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--workers", "2", "--port", str(port), "--db", str(tmp_path / "l.db")]) == 1
    assert f"cheaplm: cannot listen on 127.0.0.1:{port}: address already in use" in capsys.readouterr().err
    assert not (tmp_path / "l.db").exists()  # nothing was started or made
