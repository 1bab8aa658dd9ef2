from decimal import Decimal

import pytest

from proxy.config import ANTHROPIC_API_URL, ConfigError, load_config


def test_defaults_are_embedded_and_simulated():
    config = load_config(env={})
    assert config.database_url == "cheaplm.db" and config.upstream.simulated
    assert config.upstream.effective_url is None and config.value_multiplier == 30


def test_the_ledger_is_a_database_url_db_path_its_old_name(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('database_url = "sqlite:///var/lib/cheaplm/ledger.db"\n')
    assert load_config(str(path), env={}).database_url == "sqlite:///var/lib/cheaplm/ledger.db"
    path.write_text('db_path = "old.db"\n')
    assert load_config(str(path), env={}).database_url == "old.db"
    assert load_config(str(path), env={"CHEAPLM_DB": "sqlite://env.db"}).database_url == "sqlite://env.db"
    assert load_config(str(path), env={}, database_url="flag.db").database_url == "flag.db"


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
    assert config.port == 9100 and config.database_url == "from-env.db" and config.pass_thinking
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
    "upstream = 5", "models = 3", "[models]\nx = 1", "[models.x]\nprices = 5", "trusted_proxies = '10.0.0.0/8'",
])
def test_bad_config(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config(str(path), env={})


def test_missing_file():
    with pytest.raises(ConfigError):
        load_config("/nonexistent/cheaplm.toml", env={})


@pytest.mark.parametrize("text,needle", [
    ("transfers_per_minute = 0", "transfers_per_minute"),
    ("transfers_per_minute = -5", "transfers_per_minute"),
    ("key_cache_seconds = -1", "key_cache_seconds"),
    ("key_cache_seconds = nan", "key_cache_seconds"),
    ("key_cache_seconds = inf", "key_cache_seconds"),
    ("change_poll_interval = 0", "change_poll_interval"),
    ("change_poll_interval = 2", "change_poll_interval"),
    ("redis_url = 'redis://[::1'", "redis_url"),
    ("redis_url = 'redis://:secret@h:abc/0'", "redis_url"),
    ("redis_url = 'redis://localhost:99999'", "redis_url"),
    ("redis_url = 'redis://localhost:6379/notanumber'", "redis_url"),
    ("redis_url = 'redis://localhost/0?db=x'", "redis_url"),
    ("redis_url = 'redis://'", "redis_url"),
    ("redis_prefix = ''", "redis_prefix"),
    (f"redis_prefix = '{'x' * 129}'", "redis_prefix"),
    ("redis_timeout = nan", "redis_timeout"),
    ("redis_timeout = inf", "redis_timeout"),
    ("redis_timeout = 0", "redis_timeout"),
    ("port = 65536", "port"),
    ("port = -80", "port"),
    ("value_multiplier = 'nan'", "value_multiplier"),
    ("value_multiplier = 'inf'", "value_multiplier"),
    ("db_path = ''", "database_url"),
    ("database_url = ''", "database_url"),
    ('database_url = "a.db"\ndb_path = "b.db"', "give one"),
    ("log_level = 'LOUD'", "log_level"),
    ("keep_alive_timeout = 0", "keep_alive_timeout"),
    ("keep_alive_timeout = inf", "keep_alive_timeout"),
    ("[upstream]\nconnect_timeout = 0", "upstream.connect_timeout"),
    ("[upstream]\nfirst_byte_timeout = -1", "upstream.first_byte_timeout"),
    ("[upstream]\nidle_timeout = nan", "upstream.idle_timeout"),
    ("[upstream]\nmax_connections = 0", "upstream.max_connections"),
    ("[models.claude-sonnet-4-5]\nprices = { output = '100000.000001' }", "models.claude-sonnet-4-5.prices.output"),
    ("[models.claude-sonnet-4-5]\nprices = { input = '-1' }", "models.claude-sonnet-4-5.prices.input"),
    ("[models.claude-sonnet-4-5]\nprices = { input = 'abc' }", "models.claude-sonnet-4-5.prices.input"),
    ("[models.claude-sonnet-4-5]\nprices = { input = '1e30' }", "models.claude-sonnet-4-5.prices.input"),
    ("[models.m]\nupstream_id = 'm'\nmax_output = 1\nprices = { input = '1', output = '1e9' }", "models.m.prices.output"),
])
def test_out_of_range_settings(tmp_path, text, needle):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(str(path), env={})
    assert needle in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("env", [{"CHEAPLM_PORT": "99999"}, {"CHEAPLM_PORT": "-1"},
                                 {"CHEAPLM_VALUE_MULTIPLIER": "Infinity"}])
def test_out_of_range_environment(env):
    with pytest.raises(ConfigError):
        load_config(env=env)


def test_edges_of_the_ranges_are_accepted(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("port = 65535\nkey_cache_seconds = 0\ntransfers_per_minute = 1\nkeep_alive_timeout = 0.5\n"
                    "[models.claude-haiku-4-5]\nprices = { output = '100000', input = '0' }\n")
    config = load_config(str(path), env={})
    assert config.keep_alive_timeout == 0.5
    assert config.port == 65535 and config.catalog().resolve("claude-haiku-4.5").prices.output == 10**11
    assert load_config(env={}, port=1).port == 1


def test_upstream_channels_and_routing(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('''
[upstream]
idle_timeout = 40

[routing]
max_attempts = 2
cooldown = 12

[[upstreams]]
name = "primary"
url = "https://one.example/"
api_key_env = "ONE_KEY"
models = ["claude-sonnet-4-5", "claude-haiku-4.5"]
model_ids = { "claude-sonnet-4.5" = "their-sonnet" }
max_concurrency = 50

[[upstreams]]
name = "backup"
url = "http://two.example"
api_key = "k2"
priority = 1
weight = 2.5
models = ["*"]
idle_timeout = 9
enabled = false
''')
    config = load_config(str(path), env={"ONE_KEY": "k1"})
    primary, backup = config.channels
    assert (primary.name, primary.upstream.effective_url, primary.upstream.api_key) == (
        "primary", "https://one.example", "k1")
    assert primary.models == ("claude-sonnet-4-5", "claude-haiku-4.5") and primary.max_concurrency == 50
    assert primary.upstream.model_ids == (("claude-sonnet-4.5", "their-sonnet"),)
    assert primary.upstream.idle_timeout == 40 and backup.upstream.idle_timeout == 9  # [upstream]'s unless set
    assert (backup.priority, backup.weight, backup.models, backup.enabled) == (1, 2.5, None, False)
    assert (config.routing.max_attempts, config.routing.cooldown) == (2, 12)
    assert not config.simulated


@pytest.mark.parametrize("table, words", [
    ('[[upstreams]]\nurl = "http://x"', "needs a name and a url"),
    ('[[upstreams]]\nname = "a"\nurl = "http://x"\n[[upstreams]]\nname = "a"\nurl = "http://y"', "unique"),
    ('[[upstreams]]\nname = "a"\nurl = "http://x"\nmodels = ["gpt-4"]', "not a model of the catalog"),
    ('[[upstreams]]\nname = "a"\nurl = "http://x"\napi_key_env = "MISSING"', "MISSING is not set"),
    ('[[upstreams]]\nname = "a"\nurl = "http://x"\nweight = -1', "weight"),
    ('[[upstreams]]\nname = "a"\nurl = "http://x"\nmax_concurrency = 0', "max_concurrency"),
    ('[[upstreams]]\nname = "a"\nurl = "http://x"\nmodels = "*"', "expected a list"),
    ('[[upstreams]]\nname = "a"\nurl = "http://x"\nsurprise = 1', "unknown setting"),
    ('[upstream]\nurl = "http://x"\n[[upstreams]]\nname = "a"\nurl = "http://y"', "not both"),
    ('[routing]\nmax_attempts = 0', "routing"),
    ('[routing]\nopen_base = 10\nopen_max = 5', "routing"),
])
def test_bad_channel_tables_are_refused_with_their_name(tmp_path, table, words):
    path = tmp_path / "c.toml"
    path.write_text(table)
    with pytest.raises(ConfigError, match=words):
        load_config(str(path), env={})
