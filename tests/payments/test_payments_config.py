"""[payments]: the bonus table and [payments.stripe] (secrets given or named by *_env),
and money.credit_for, the one rule every provider and the top-up page use."""

from decimal import Decimal

import pytest

from proxy.config import ConfigError, load_config
from proxy.money import credit_for


def config_from(tmp_path, text: str, env=None):
    path = tmp_path / "cheaplm.toml"
    path.write_text(text)
    return load_config(str(path), env=env or {})


def test_the_bonus_table_and_card_payments(tmp_path):
    config = config_from(tmp_path, '[payments]\nbonus = { "100" = 100, "10" = 5 }\n[payments.stripe]\n'
                                   'secret_key_env = "STRIPE_SECRET_KEY"\nwebhook_secret = "whsec_abc"\n',
                         {"STRIPE_SECRET_KEY": "sk_test_123"})
    assert config.payments.bonus == ((10_000_000, 5_000_000), (100_000_000, 100_000_000))
    card = config.payments.stripe
    assert (card.secret_key, card.webhook_secret, card.api_base, card.currency) == (
        "sk_test_123", "whsec_abc", "https://api.stripe.com", "usd")
    assert "sk_test_123" not in repr(config) and "whsec_abc" not in repr(config)


def test_card_payments_are_off_by_default(tmp_path):
    config = config_from(tmp_path, "")
    assert config.payments.stripe is None and config.payments.bonus == ()


@pytest.mark.parametrize("text, env, words", [
    ('[payments.stripe]\nwebhook_secret = "whsec_abc"\n', {}, "secret_key"),
    ('[payments.stripe]\nsecret_key = "sk_x"\nwebhook_secret_env = "UNSET"\n', {}, "webhook_secret"),
    ('[payments.stripe]\nsecret_key = "sk_x"\nwebhook_secret = "w"\ncurrency = "jpy"\n', {}, "currency"),
    ('[payments.stripe]\nsecret_key = "sk_x"\nwebhook_secret = "w"\napi_base = "ftp://x"\n', {}, "api_base"),
    ('[payments.stripe]\nsecret_key = "sk_x"\nwebhook_secret = "w"\ncolour = "red"\n', {}, "colour"),
    ('[payments]\nbonus = { "10" = -5 }\n', {}, "payments.bonus.10"),
    ('[payments]\nbonus = { "ten" = 5 }\n', {}, "payments.bonus.ten"),
    ('[payments]\nbonus = 5\n', {}, "payments.bonus"),
    ('[payments]\nfree_money = true\n', {}, "free_money"),
])
def test_bad_payments_settings_are_refused_by_name(tmp_path, text, env, words):
    with pytest.raises(ConfigError, match=words):
        config_from(tmp_path, text, env)


def test_credit_for_is_the_multiplier_plus_the_highest_step_reached():
    bonus = ((10_000_000, 5_000_000), (100_000_000, 100_000_000))
    assert credit_for(10_000_000, Decimal(30), bonus) == 305_000_000
    assert credit_for(9_990_000, Decimal(30), bonus) == 299_700_000
    assert credit_for(100_000_000, Decimal(30), bonus) == 3_100_000_000
    assert credit_for(500_000_000, Decimal(30), bonus) == 15_100_000_000
    assert credit_for(10_000_000, Decimal(30)) == 300_000_000
    assert credit_for(1, Decimal("0.5")) == 1                      # half up, once
