from decimal import Decimal

import pytest

from proxy.config import ANTHROPIC_API_URL, ConfigError, load_config


def test_defaults_are_embedded_and_simulated():
    config = load_config(env={})
    assert config.db_path == "cheaplm.db" and config.upstream.simulated
    assert config.upstream.effective_url is None and config.value_multiplier == 30


def test_file_env_and_flags_in_order(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("""
port = 9000
db_path = "from-file.db"
pass_thinking = true
trusted_proxies = ["10.0.0.0/8"]
[upstream]
url = "http://file-upstream"
idle_timeout = 12
[models.claude-sonnet-4-5]
max_output = 64000
""")
    env = {"CHEAPLM_DB": "from-env.db", "CHEAPLM_UPSTREAM_API_KEY": "k", "CHEAPLM_VALUE_MULTIPLIER": "25"}
    config = load_config(str(path), env=env, port=9100)
    assert config.port == 9100 and config.db_path == "from-env.db" and config.pass_thinking
    assert config.upstream.url == "http://file-upstream" and config.upstream.api_key == "k"
    assert config.upstream.idle_timeout == 12.0 and config.value_multiplier == Decimal(25)
    assert config.catalog().resolve("claude-sonnet-4.5").max_output == 64000
    assert config.trusted_networks()[0].prefixlen == 8
    assert load_config(env={"CHEAPLM_UPSTREAM_API_KEY": "k"}).upstream.effective_url == ANTHROPIC_API_URL
    flagged = load_config(env={}, upstream_url="http://flag:1/")
    assert flagged.upstream.effective_url == "http://flag:1" and not flagged.upstream.simulated


@pytest.mark.parametrize("text", [
    "port = 'abc'", "colour = 1", "[upstream]\nspeed = 3", "trusted_proxies = ['nonsense']",
    "value_multiplier = -1", "[models.x]\nmax_output = 1", "not toml at all [",
])
def test_bad_config(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config(str(path), env={})


def test_missing_file():
    with pytest.raises(ConfigError):
        load_config("/nonexistent/cheaplm.toml", env={})
