"""Where the secret sealing Responses reasoning items comes from when none is configured."""

from __future__ import annotations

import os
import stat

import pytest

from proxy.config import Config
from proxy.reasoning_key import SUFFIX, load_reasoning_secret


def test_made_once_beside_the_ledger_and_kept(tmp_path):
    config = Config(database_url=str(tmp_path / "ledger.db"))
    first = load_reasoning_secret(config)
    path = tmp_path / ("ledger.db" + SUFFIX)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(first) == 64
    assert load_reasoning_secret(config) == first  # a restart, or a second gateway on the ledger
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_the_configured_secret_wins_and_no_file_is_made(tmp_path):
    config = Config(database_url=str(tmp_path / "ledger.db"), responses_secret="a configured secret!")
    assert load_reasoning_secret(config) == b"a configured secret!"
    assert not list(tmp_path.iterdir())


def test_a_ledger_without_a_file_gets_a_secret_for_this_process(caplog):
    config = Config(database_url=":memory:")
    assert load_reasoning_secret(config) != load_reasoning_secret(config)
    assert "responses_secret" in caplog.text


def test_a_damaged_file_is_an_error_not_a_new_secret(tmp_path):
    (tmp_path / ("ledger.db" + SUFFIX)).write_text("short\n")
    with pytest.raises(ValueError, match="remove it"):
        load_reasoning_secret(Config(database_url=str(tmp_path / "ledger.db")))
