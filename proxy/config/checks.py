"""The configuration's consistency checks, after it is built (ConfigError names the setting)."""

from __future__ import annotations

import logging
import math
from urllib.parse import parse_qsl, urlsplit

from ..catalog import Catalog
from ..money import MAX_AMOUNT, MICRO
from .settings import MAX_WORKERS, PORTS, AccountsConfig, Config, ConfigError


MAX_REDIS_PREFIX = 128  # (it starts every key of every command: a long one is paid on each)


def _validate_redis_url(url: str) -> None:
    """What coredis would refuse (or silently misread) only at the first connection."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("redis_url must be a redis://, rediss:// or unix:// URL")
    try:
        parts = urlsplit(url)
        parts.port  # (raises for a port that is not one)
        db = [parts.path.strip("/")] if not url.startswith("unix://") else []
        db += [v for k, v in parse_qsl(parts.query) if k == "db"]
        if any(not d.isdigit() for d in db if d):
            raise ValueError("the database must be a number")
        if not (parts.path if url.startswith("unix://") else parts.hostname):
            raise ValueError("no host" if not url.startswith("unix://") else "no socket path")
    except ValueError as exc:  # (the message never holds the URL, so never its password)
        raise ConfigError(f"redis_url is not a valid Redis URL: {exc}") from None


def validate(config: Config) -> None:
    try:
        config.trusted_networks()
    except ValueError as exc:
        raise ConfigError(f"trusted_proxies: {exc}") from None
    try:
        catalog = config.catalog()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for model_id, _ in config.upstream.model_ids:
        if catalog.resolve(model_id) is None:
            raise ConfigError(f"upstream.model_ids: {model_id!r} is not a model of the catalog")
    _validate_channels(config, catalog)
    up = config.upstream
    multiplier = config.value_multiplier
    for ok, message in (
        (config.database_url != "", "database_url must not be empty"),
        (config.port in PORTS, f"port must be 0-65535 (0: any free port), got {config.port}"),
        (1 <= config.workers <= MAX_WORKERS, f"workers must be 1-{MAX_WORKERS}, got {config.workers}"),
        (multiplier.is_finite() and 0 < multiplier <= MAX_AMOUNT,
         f"value_multiplier must be a positive number up to {MAX_AMOUNT}, got {multiplier}"),
        (config.max_body_bytes > 0, "max_body_bytes must be positive"),
        (config.log_level.upper() in logging.getLevelNamesMapping(),
         f"log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {config.log_level!r}"),
        (0 <= config.key_cache_seconds < math.inf,
         f"key_cache_seconds must be a number of seconds, 0 or more, got {config.key_cache_seconds}"),
        (config.transfers_per_minute >= 1,
         f"transfers_per_minute must be at least 1, got {config.transfers_per_minute}"),
        (config.count_tokens_per_minute >= 1 and config.count_tokens_account_per_minute >= 1,
         "count_tokens_per_minute and count_tokens_account_per_minute must be at least 1"),
        *((getattr(up, name) > 0, f"upstream.{name} must be positive (seconds), got {getattr(up, name)}")
          for name in ("connect_timeout", "first_byte_timeout", "idle_timeout")),
        (up.max_connections >= 1, f"upstream.max_connections must be at least 1, got {up.max_connections}"),
    ):
        if not ok:  # written so that NaN fails every check
            raise ConfigError(message)
    if config.log_format not in ("text", "json"):
        raise ConfigError(f"log_format must be text or json, got {config.log_format!r}")
    try:
        config.metrics_allowed()
    except ValueError as exc:
        raise ConfigError(f"metrics_networks: {exc}") from None
    if config.metrics_token is not None and len(config.metrics_token) < 16:
        raise ConfigError("metrics_token must be at least 16 characters")
    if config.responses_secret is not None and len(config.responses_secret.encode()) < 16:
        raise ConfigError("responses_secret must be at least 16 characters")
    _validate_accounts(config.accounts)
    if config.max_tokens_policy not in ("clamp", "reject"):
        raise ConfigError("max_tokens_policy must be clamp or reject")
    if config.body_timeout <= 0 or config.body_grace < 0 or config.body_min_rate < 0:
        raise ConfigError("body_timeout must be positive; body_grace and body_min_rate not negative")
    if not 0 < config.channel_sync_interval < math.inf:
        raise ConfigError(f"channel_sync_interval must be a positive number of seconds, got "
                          f"{config.channel_sync_interval}")
    if not 0 < config.change_poll_interval <= 1:
        raise ConfigError(f"change_poll_interval must be a positive number of seconds, 1 at most, got "
                          f"{config.change_poll_interval}")
    if config.redis_url is not None:
        _validate_redis_url(config.redis_url)
    if not 0 < config.redis_timeout <= 30 or not 0 < len(config.redis_prefix.encode()) <= MAX_REDIS_PREFIX:
        raise ConfigError(f"redis_timeout must be a positive number of seconds (30 at most); redis_prefix 1 to "
                          f"{MAX_REDIS_PREFIX} bytes")
    if not 0 < config.shutdown_grace < math.inf:
        raise ConfigError(f"shutdown_grace must be a positive number of seconds, got {config.shutdown_grace}")
    if not 0 < config.keep_alive_timeout < math.inf:
        raise ConfigError(f"keep_alive_timeout must be a positive number of seconds, got {config.keep_alive_timeout}")
    if config.lease_seconds < 1 or config.progress_interval <= 0 or config.store_busy_timeout < 0:
        raise ConfigError("lease_seconds must be at least 1, progress_interval positive, "
                          "store_busy_timeout not negative")


def _validate_accounts(accounts: AccountsConfig) -> None:
    credit = accounts.signup_credit
    for ok, message in (
        (credit.is_finite() and 0 <= credit <= MAX_AMOUNT / MICRO and credit == round(credit, 6),
         f"accounts.signup_credit must be 0 to {MAX_AMOUNT // MICRO} USD, to the micro-dollar, got {credit}"),
        *((getattr(accounts, n) >= 1, f"accounts.{n} must be at least 1, got {getattr(accounts, n)}")
          for n in ("signups_per_hour", "login_failures_per_account", "login_failures_per_ip",
                    "redeem_failures_per_user", "redeem_failures_per_ip", "password_time_cost", "max_sessions")),
        *((0 < getattr(accounts, n) < math.inf, f"accounts.{n} must be a positive number, got {getattr(accounts, n)}")
          for n in ("login_window", "redeem_window", "session_hours", "login_backoff", "login_known_days")),
        (accounts.password_memory_kib >= 64, f"accounts.password_memory_kib must be at least 64, "
                                             f"got {accounts.password_memory_kib}"),
        (accounts.free_tier_rpm >= 0, f"accounts.free_tier_rpm must be 0 (none) or more, got {accounts.free_tier_rpm}"),
        (accounts.webhook_secret is None or len(accounts.webhook_secret) >= 16,
         "accounts.webhook_secret must be at least 16 characters"),
    ):
        if not ok:
            raise ConfigError(message)


def _validate_channels(config: Config, catalog: Catalog) -> None:
    names = [c.name for c in config.channels]
    if len(set(names)) != len(names):
        raise ConfigError(f"upstreams: channel names must be unique, got {names}")
    if config.channels and (config.upstream.url or config.upstream.api_key):
        raise ConfigError("give either [upstream] url/api_key (one channel) or [[upstreams]] tables, not both")
    for channel in config.channels:
        where = f"upstreams.{channel.name}"
        for model_id in (*(channel.models or ()), *(m for m, _ in channel.upstream.model_ids)):
            if catalog.resolve(model_id) is None:
                raise ConfigError(f"{where}: {model_id!r} is not a model of the catalog")
        up = channel.upstream
        for ok, message in (
            (channel.weight >= 0 and channel.weight < math.inf, f"{where}.weight must be 0 or more"),
            (channel.max_concurrency is None or channel.max_concurrency >= 1,
             f"{where}.max_concurrency must be at least 1"),
            (all(getattr(up, n) > 0 for n in ("connect_timeout", "first_byte_timeout", "idle_timeout")),
             f"{where}: timeouts must be positive (seconds)"),
            (up.max_connections >= 1, f"{where}.max_connections must be at least 1"),
        ):
            if not ok:
                raise ConfigError(message)
    routing = config.routing
    if not (routing.max_attempts >= 1 and routing.failures_to_open >= 1 and routing.deadline > 0
            and routing.cooldown >= 0 and 0 < routing.open_base <= routing.open_max < math.inf):
        raise ConfigError("routing: max_attempts and failures_to_open must be at least 1, deadline positive, "
                          "cooldown not negative, and 0 < open_base <= open_max")


