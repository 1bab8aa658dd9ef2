"""Reading the configuration: the TOML file, the CHEAPLM_* environment and the flags, each
setting coerced and checked by name. No I/O at import; ``load_config`` reads what it is given."""

from __future__ import annotations

import os
import tomllib
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from ..catalog import MAX_SERVER_TOOL_USD
from ..money import MICRO, parse_usd
from .settings import (MAX_PRICE_USD, AccountsConfig, ChannelConfig, Config, ConfigError, PaymentsConfig, RoutingConfig,
                       StripeConfig, UpstreamConfig)
from .checks import validate


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}: expected a boolean, got {value!r}")


def _as_number(kind, value: Any, name: str):
    try:
        return kind(value)
    except (TypeError, ValueError, InvalidOperation):
        raise ConfigError(f"{name}: expected {kind.__name__}, got {value!r}") from None


_TOP = {"database_url": str, "host": str, "port": int, "value_multiplier": Decimal,
        "max_body_bytes": int, "pass_thinking": bool, "key_cache_seconds": float, "log_level": str,
        "transfers_per_minute": int, "max_tokens_policy": str, "model_fallback": bool,
        "body_timeout": float, "body_grace": float, "body_min_rate": int, "lease_seconds": float,
        "progress_interval": float, "store_busy_timeout": float, "channel_sync_interval": float,
        "change_poll_interval": float,
        "keep_alive_timeout": float, "shutdown_grace": float,
        "count_tokens_per_minute": int, "count_tokens_account_per_minute": int,
        "log_format": str, "metrics_token": str, "auto_cache": bool, "auto_cache_messages": bool,
        "responses_secret": str, "redis_url": str, "redis_prefix": str, "redis_timeout": float,
        "workers": int}
_UP = {"url": str, "api_key": str, "connect_timeout": float, "first_byte_timeout": float,
       "idle_timeout": float, "max_connections": int, "sim_ttft_ms": float, "sim_gap_ms": float,
       "sim_deltas": int}

_CHANNEL = {"name": str, "url": str, "api_key": str, "api_key_env": str, "priority": int, "weight": float,
            "models": list, "model_ids": dict, "max_concurrency": int, "enabled": bool,
            "connect_timeout": float, "first_byte_timeout": float, "idle_timeout": float, "max_connections": int}
_ACCOUNTS = {"signup": bool, "signup_credit": Decimal, "free_tier_rpm": int, "signups_per_hour": int,
             "login_failures_per_account": int, "login_backoff": float, "login_known_days": float, "max_sessions": int,
             "login_failures_per_ip": int, "login_window": float, "redeem_failures_per_user": int,
             "redeem_failures_per_ip": int, "redeem_window": float, "session_hours": float,
             "password_time_cost": int, "password_memory_kib": int, "webhook_secret": str}
_STRIPE = {"secret_key": str, "secret_key_env": str, "webhook_secret": str, "webhook_secret_env": str,
           "api_base": str, "currency": str}
# Stripe's currencies without two decimals (https://docs.stripe.com/currencies): amounts here are cents.
_NOT_CENTS = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf bhd jod kwd omr tnd".split())
_ROUTING = {"max_attempts": int, "deadline": float, "affinity": bool, "cooldown": float, "failures_to_open": int,
            "open_base": float, "open_max": float}

_ENV_TOP = {"CHEAPLM_DB": "database_url", "CHEAPLM_HOST": "host", "CHEAPLM_PORT": "port",
            "CHEAPLM_VALUE_MULTIPLIER": "value_multiplier", "CHEAPLM_MAX_BODY_BYTES": "max_body_bytes",
            "CHEAPLM_PASS_THINKING": "pass_thinking", "CHEAPLM_LOG_LEVEL": "log_level",
            "CHEAPLM_LOG_FORMAT": "log_format", "CHEAPLM_METRICS_TOKEN": "metrics_token",
            "CHEAPLM_RESPONSES_SECRET": "responses_secret", "CHEAPLM_AUTO_CACHE": "auto_cache",
            "CHEAPLM_AUTO_CACHE_MESSAGES": "auto_cache_messages", "CHEAPLM_REDIS_URL": "redis_url",
            "CHEAPLM_WORKERS": "workers"}
_ENV_UP = {"CHEAPLM_UPSTREAM_URL": "url", "CHEAPLM_UPSTREAM_API_KEY": "api_key"}


# Settings load_config reads outside the tables above (lists, nested tables, one env var).
_LIST_KEYS = ("trusted_proxies", "metrics_networks")
_ENV_OTHER = ("CHEAPLM_CONFIG", "CHEAPLM_TRUSTED_PROXIES")


def known_keys() -> frozenset[str]:
    """Every setting load_config accepts, as the documentation names it: dotted TOML keys
    (``accounts.signup``, ``upstreams[].url``, ``models.ID.prices.input``) and the
    ``CHEAPLM_*`` environment variables. tests/test_docs.py checks each is documented."""
    from ..catalog import _MODEL_FIELDS, LANES
    return frozenset((
        *_TOP, "db_path", *_LIST_KEYS, "upstream.model_ids", *(f"upstream.{k}" for k in _UP),
        *(f"upstreams[].{k}" for k in _CHANNEL), *(f"routing.{k}" for k in _ROUTING),
        *(f"accounts.{k}" for k in _ACCOUNTS), "server_tools", "payments.bonus", *(f"payments.stripe.{k}" for k in _STRIPE), *(f"models.ID.{k}" for k in _MODEL_FIELDS - {"prices"}),
        *(f"models.ID.prices.{lane}" for lane in LANES), *_ENV_TOP, *_ENV_UP, *_ENV_OTHER))


def _coerce(schema: Mapping[str, type], values: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in schema:
            raise ConfigError(f"{where}: unknown setting {key!r}")
        kind = schema[key]
        name = f"{where}.{key}" if where else key
        if kind is bool:
            out[key] = _as_bool(value, name)
        elif kind in (list, dict):
            out[key] = _shaped(value, kind, name, "a list" if kind is list else "a table")
        elif kind is str:
            out[key] = str(value)
        else:
            out[key] = _as_number(kind, value, name)
    return out


def load_config(path: str | None = None, env: Mapping[str, str] | None = None,
                **overrides: Any) -> Config:
    """Build a Config. ``overrides`` are flag values (None means 'not given')."""
    env = os.environ if env is None else env
    path = path or env.get("CHEAPLM_CONFIG")
    data: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
    upstream_table = dict(_shaped(data.pop("upstream", {}), dict, "upstream", "a table"))
    model_ids = _model_ids(upstream_table.pop("model_ids", {}))
    models = _model_tables(data.pop("models", {}))
    server_tools = _server_tool_table(data.pop("server_tools", {}), "server_tools")
    channel_tables = _shaped(data.pop("upstreams", []), list, "upstreams", "[[upstreams]] tables")
    routing = RoutingConfig(**_coerce(_ROUTING, _shaped(data.pop("routing", {}), dict, "routing", "a table"),
                                      "routing"))
    accounts = AccountsConfig(**_coerce(_ACCOUNTS, _shaped(data.pop("accounts", {}), dict, "accounts", "a table"),
                                        "accounts"))
    payments = _payments(data.pop("payments", {}), env)
    proxies = _shaped(data.pop("trusted_proxies", []), list, "trusted_proxies", "a list")
    metrics_networks = _shaped(data.pop("metrics_networks", []), list, "metrics_networks", "a list")
    if "db_path" in data:  # the setting's name before it took URLs
        if "database_url" in data:
            raise ConfigError("database_url and db_path are one setting (db_path is its old name): give one")
        data["database_url"] = data.pop("db_path")
    top = _coerce(_TOP, data, "")
    up = _coerce(_UP, upstream_table, "upstream")
    top.update(_coerce(_TOP, {v: env[k] for k, v in _ENV_TOP.items() if env.get(k)}, "env"))
    up.update(_coerce(_UP, {v: env[k] for k, v in _ENV_UP.items() if env.get(k)}, "env"))
    if env.get("CHEAPLM_TRUSTED_PROXIES"):
        proxies = [p for p in env["CHEAPLM_TRUSTED_PROXIES"].split(",") if p.strip()]
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "upstream_url":
            up["url"] = value
        elif key in _TOP:
            top[key] = value
        else:
            raise ConfigError(f"unknown override {key!r}")
    upstream = UpstreamConfig(**up, model_ids=model_ids)
    channels = tuple(_channel(table, i, upstream, env) for i, table in enumerate(channel_tables))
    config = Config(upstream=upstream, channels=channels, routing=routing, accounts=accounts, payments=payments,
                    metrics_networks=tuple(str(n).strip() for n in metrics_networks), trusted_proxies=tuple(str(p).strip() for p in proxies),
                    model_overrides=models, server_tools=server_tools, **top)
    validate(config)
    return config


def _shaped(value: Any, kind: type, name: str, expected: str) -> Any:
    if not isinstance(value, kind):
        raise ConfigError(f"{name}: expected {expected}, got {value!r}")
    return value


def _channel(table: Any, index: int, defaults: UpstreamConfig, env: Mapping[str, str]) -> ChannelConfig:
    """One [[upstreams]] table; transport settings it does not give come from [upstream]."""
    where = f"upstreams[{index}]"
    values = _coerce(_CHANNEL, _shaped(table, dict, where, "a table"), where)
    name = values.pop("name", "").strip()
    url = values.pop("url", "").strip()
    if not name or not url:
        raise ConfigError(f"{where}: a channel needs a name and a url")
    key = values.pop("api_key", None)
    key_env = values.pop("api_key_env", None)
    if key_env is not None:
        key = env.get(key_env)
        if not key:
            raise ConfigError(f"upstreams.{name}: api_key_env {key_env} is not set in the environment")
    models = values.pop("models", None)
    if models is not None:
        if not all(isinstance(m, str) and m.strip() for m in models):
            raise ConfigError(f"upstreams.{name}.models: expected model ids or \"*\", got {models!r}")
        models = None if "*" in models else tuple(m.strip() for m in models)
    upstream = replace(defaults, url=url, api_key=key, model_ids=_model_ids(values.pop("model_ids", {}), name),
                       **{k: values.pop(k) for k in ("connect_timeout", "first_byte_timeout", "idle_timeout",
                                                     "max_connections") if k in values})
    return ChannelConfig(name=name, upstream=upstream, models=models, **values)


def _payments(table: Any, env: Mapping[str, str]) -> PaymentsConfig:
    """``[payments]``: ``bonus = { "10" = 5 }`` (USD of API value added at or above a paid
    amount) and ``[payments.stripe]`` (each secret given, or named by an ``*_env`` variable)."""
    table = dict(_shaped(table, dict, "payments", "a table"))
    stripe, bonus = table.pop("stripe", None), table.pop("bonus", {})
    for unknown in table:
        raise ConfigError(f"payments: unknown setting {unknown!r}")
    steps = []
    for paid, extra in _shaped(bonus, dict, "payments.bonus", 'a table of "paid USD" = USD added').items():
        try:
            step = parse_usd(paid), parse_usd(extra)
        except ValueError as exc:
            raise ConfigError(f"payments.bonus.{paid}: {exc}") from None
        if step[0] <= 0 or step[1] < 0:
            raise ConfigError(f"payments.bonus.{paid}: the paid amount must be positive, the bonus 0 or more")
        steps.append(step)
    if stripe is None:
        return PaymentsConfig(tuple(sorted(steps)))
    values = _coerce(_STRIPE, _shaped(stripe, dict, "payments.stripe", "a table"), "payments.stripe")
    for name in ("secret_key", "webhook_secret"):
        variable = values.pop(f"{name}_env", None)
        if variable is not None and name not in values:
            values[name] = env.get(variable, "")
        if not values.get(name, "").strip():
            raise ConfigError(f"payments.stripe.{name} (or {name}_env naming a set variable) is required")
    card = StripeConfig(**values)
    if not card.api_base.startswith(("https://", "http://")) or card.currency in _NOT_CENTS or not (
            len(card.currency) == 3 and card.currency.isalpha() and card.currency.islower()):
        raise ConfigError("payments.stripe: api_base must be an http(s) URL and currency a lower-case "
                          f"three-letter code with cents, got {card.api_base!r}, {card.currency!r}")
    return PaymentsConfig(tuple(sorted(steps)), card)


def _model_ids(table: Any, channel: str | None = None) -> tuple[tuple[str, str], ...]:
    """``[upstream.model_ids]``: catalog model id -> the provider's id (checked against
    the catalog in ``_validate``)."""
    where = f"upstreams.{channel}.model_ids" if channel else "upstream.model_ids"
    pairs = _shaped(table, dict, where, "a table of model id = provider id")
    for model_id, provider_id in pairs.items():
        if not isinstance(provider_id, str) or not provider_id.strip():
            raise ConfigError(f"{where}.{model_id}: expected a non-empty string, got {provider_id!r}")
    return tuple(pairs.items())


def _price(value: Any, name: str, most_usd: int, unit: str) -> None:
    """A price in USD, 0 to ``most_usd`` (per ``unit``), or the ConfigError naming ``name``."""
    try:
        micro = parse_usd(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    if not 0 <= micro <= most_usd * MICRO:
        raise ConfigError(f"{name}: must be 0 to {most_usd} USD per {unit}, got {value!r}")


def _server_tool_table(table: Any, where: str) -> Mapping[str, Any]:
    """A ``[server_tools]`` table (kind = USD per use, e.g. ``web_search = "0.01"``), checked."""
    for kind, value in _shaped(table, dict, where, "a table of tool = USD per use").items():
        _price(value, f"{where}.{kind}", MAX_SERVER_TOOL_USD, "use")
    return table


def _model_tables(models: Any) -> Mapping[str, Mapping]:
    """The [models.ID] tables, their prices checked here, where their names are as written."""
    for model_id, table in _shaped(models, dict, "models", "[models.ID] tables").items():
        _shaped(table, dict, f"models.{model_id}", "a table")
        _server_tool_table(table.get("server_tools", {}), f"models.{model_id}.server_tools")
        for lane, value in _shaped(table.get("prices", {}), dict, f"models.{model_id}.prices", "a table").items():
            _price(value, f"models.{model_id}.prices.{lane}", MAX_PRICE_USD, "1M tokens")
    return models


