"""Configuration: frozen dataclasses built from defaults < TOML file < CHEAPLM_* env < flags.

No I/O at import. ``load_config`` reads the file and the environment it is given.

Upstream choice: an explicit ``upstream.url`` is used as given (with the key if
one is set). With no URL and no key, the gateway runs the built-in simulated
upstream in-process and says so in its log and in ``/health``. With a key but
no URL, the upstream is Anthropic's API.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import tomllib
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from .catalog import DEFAULT_MODELS, MAX_SERVER_TOOL_USD, Catalog, apply_overrides
from .money import MAX_AMOUNT, MICRO, parse_usd

ANTHROPIC_API_URL = "https://api.anthropic.com"
PORTS = range(0, 65536)  # 0: any free port (the one bound is logged)
MAX_PRICE_USD = 100_000  # per 1M tokens, for any price lane of a [models.ID] table


@dataclass(frozen=True)
class UpstreamConfig:
    url: str | None = None
    api_key: str | None = None
    connect_timeout: float = 10.0
    first_byte_timeout: float = 600.0
    idle_timeout: float = 300.0
    max_connections: int = 4096
    # Knobs for the in-process simulator (used only when it is the upstream).
    sim_ttft_ms: float = 0.0
    sim_gap_ms: float = 0.0
    sim_deltas: int = 16
    # The provider's own id for a catalog model, where it differs from the catalog's
    # upstream id (``[upstream.model_ids]``: "claude-sonnet-4.5" = "provider-id").
    model_ids: tuple[tuple[str, str], ...] = ()

    @property
    def simulated(self) -> bool:
        return self.url is None and not self.api_key

    @property
    def effective_url(self) -> str | None:
        if self.url:
            return self.url.rstrip("/")
        return None if self.simulated else ANTHROPIC_API_URL


@dataclass(frozen=True)
class ChannelConfig:
    """One ``[[upstreams]]`` table: an upstream channel and how the router uses it."""

    name: str
    upstream: UpstreamConfig          # url, key, timeouts (from [upstream] unless set here), model ids
    priority: int = 0                 # lower is preferred
    weight: float = 1.0
    models: tuple[str, ...] | None = None  # catalog model ids it serves; None: every model ("*")
    max_concurrency: int | None = None
    enabled: bool = True


@dataclass(frozen=True)
class RoutingConfig:
    """``[routing]``: failover bounds, cooldowns and circuits, prompt-cache affinity."""

    max_attempts: int = 3
    deadline: float = 30.0
    affinity: bool = True
    cooldown: float = 30.0
    failures_to_open: int = 3
    open_base: float = 5.0
    open_max: float = 300.0


@dataclass(frozen=True)
class AccountsConfig:
    """``[accounts]``: self-serve accounts, sessions and their anti-abuse limits."""

    signup: bool = True                    # anyone may sign up (false: accounts only from the CLI)
    signup_credit: Decimal = Decimal(0)    # USD of API value a new signup starts with
    free_tier_rpm: int = 0                 # requests a minute per key of a user who never paid (0: no limit)
    signups_per_hour: int = 10             # per client IP
    login_failures_per_account: int = 5    # within login_window
    login_failures_per_ip: int = 20        # within login_window
    login_window: float = 900.0            # seconds
    redeem_failures_per_user: int = 10     # wrong, used or expired codes within redeem_window
    redeem_failures_per_ip: int = 30
    redeem_window: float = 3600.0
    session_hours: float = 336.0           # a session's life (14 days)
    password_time_cost: int = 3            # argon2id parameters (the argon2-cffi defaults)
    password_memory_kib: int = 65536
    webhook_secret: str | None = None      # signs POST /api/payments/webhook (payments.SignedWebhook); none: off


@dataclass(frozen=True)
class Config:
    db_path: str = "cheaplm.db"
    host: str = "127.0.0.1"
    port: int = 8080
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    channels: tuple[ChannelConfig, ...] = ()  # [[upstreams]]; none: [upstream] (or the simulator) alone
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    value_multiplier: Decimal = Decimal(30)
    max_body_bytes: int = 32 * 1024 * 1024
    trusted_proxies: tuple[str, ...] = ()
    pass_thinking: bool = False
    key_cache_seconds: float = 5.0
    transfers_per_minute: int = 20  # per key, for the reseller transfer API
    # count_tokens (free upstream, so outside the keys' rpm): a bucket per key and one per
    # account, each this many a minute in bursts of as many (Claude Code's /context sends 14 at once).
    count_tokens_per_minute: int = 60
    count_tokens_account_per_minute: int = 120
    log_level: str = "INFO"
    model_overrides: Mapping[str, Mapping] = field(default_factory=dict)
    server_tools: Mapping[str, Any] = field(default_factory=dict)  # [server_tools]: kind = USD per use
    # Requests: a max_tokens above a model's cap is clamped (or rejected); an unknown id
    # of a known family is served by that family's newest model.
    max_tokens_policy: str = "clamp"
    model_fallback: bool = True
    # Request bodies: read only once the key is accepted, within body_timeout seconds
    # overall and, after body_grace seconds, at body_min_rate bytes/s at least.
    body_timeout: float = 120.0
    body_grace: float = 10.0
    body_min_rate: int = 2048
    # Money across processes: this process's lease on its holds (a heartbeat every third
    # of it), how often in-flight streams checkpoint what they delivered, and how long a
    # store locked by another process is waited for before answering 503.
    lease_seconds: float = 15.0
    progress_interval: float = 2.0
    store_busy_timeout: float = 5.0
    # How often a running gateway applies the operator's channel overrides (cheaplm
    # upstream enable|disable) and publishes its channels' state (cheaplm upstream list).
    channel_sync_interval: float = 2.0
    # Observability: the log's format (one JSON object a line, or text), and who may read
    # /metrics besides loopback: these networks, or anyone presenting the token.
    log_format: str = "text"
    metrics_networks: tuple[str, ...] = ()
    metrics_token: str | None = None
    accounts: AccountsConfig = field(default_factory=AccountsConfig)

    @property
    def simulated(self) -> bool:
        """No upstream configured: the built-in simulator answers."""
        return not self.channels and self.upstream.simulated

    def catalog(self) -> Catalog:
        return Catalog.build(apply_overrides(DEFAULT_MODELS, self.model_overrides, self.server_tools))

    def metrics_allowed(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(c, strict=False) for c in self.metrics_networks)

    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(c, strict=False) for c in self.trusted_proxies)


class ConfigError(ValueError):
    pass


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


_TOP = {"db_path": str, "host": str, "port": int, "value_multiplier": Decimal,
        "max_body_bytes": int, "pass_thinking": bool, "key_cache_seconds": float, "log_level": str,
        "transfers_per_minute": int, "max_tokens_policy": str, "model_fallback": bool,
        "count_tokens_per_minute": int, "count_tokens_account_per_minute": int,
        "body_timeout": float, "body_grace": float, "body_min_rate": int, "lease_seconds": float,
        "progress_interval": float, "store_busy_timeout": float, "channel_sync_interval": float,
        "log_format": str, "metrics_token": str}
_UP = {"url": str, "api_key": str, "connect_timeout": float, "first_byte_timeout": float,
       "idle_timeout": float, "max_connections": int, "sim_ttft_ms": float, "sim_gap_ms": float,
       "sim_deltas": int}

_CHANNEL = {"name": str, "url": str, "api_key": str, "api_key_env": str, "priority": int, "weight": float,
            "models": list, "model_ids": dict, "max_concurrency": int, "enabled": bool,
            "connect_timeout": float, "first_byte_timeout": float, "idle_timeout": float, "max_connections": int}
_ACCOUNTS = {"signup": bool, "signup_credit": Decimal, "free_tier_rpm": int, "signups_per_hour": int, "login_failures_per_account": int,
             "login_failures_per_ip": int, "login_window": float, "redeem_failures_per_user": int,
             "redeem_failures_per_ip": int, "redeem_window": float, "session_hours": float,
             "password_time_cost": int, "password_memory_kib": int, "webhook_secret": str}
_ROUTING = {"max_attempts": int, "deadline": float, "affinity": bool, "cooldown": float, "failures_to_open": int,
            "open_base": float, "open_max": float}

_ENV_TOP = {"CHEAPLM_DB": "db_path", "CHEAPLM_HOST": "host", "CHEAPLM_PORT": "port",
            "CHEAPLM_VALUE_MULTIPLIER": "value_multiplier", "CHEAPLM_MAX_BODY_BYTES": "max_body_bytes",
            "CHEAPLM_PASS_THINKING": "pass_thinking", "CHEAPLM_LOG_LEVEL": "log_level",
            "CHEAPLM_LOG_FORMAT": "log_format", "CHEAPLM_METRICS_TOKEN": "metrics_token"}
_ENV_UP = {"CHEAPLM_UPSTREAM_URL": "url", "CHEAPLM_UPSTREAM_API_KEY": "api_key"}


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
    proxies = _shaped(data.pop("trusted_proxies", []), list, "trusted_proxies", "a list")
    metrics_networks = _shaped(data.pop("metrics_networks", []), list, "metrics_networks", "a list")
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
    config = Config(upstream=upstream, channels=channels, routing=routing, accounts=accounts,
                    metrics_networks=tuple(str(n).strip() for n in metrics_networks), trusted_proxies=tuple(str(p).strip() for p in proxies),
                    model_overrides=models, server_tools=server_tools, **top)
    _validate(config)
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


def _validate(config: Config) -> None:
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
        (config.db_path != "", "db_path must not be empty"),
        (config.port in PORTS, f"port must be 0-65535 (0: any free port), got {config.port}"),
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
    _validate_accounts(config.accounts)
    if config.max_tokens_policy not in ("clamp", "reject"):
        raise ConfigError("max_tokens_policy must be clamp or reject")
    if config.body_timeout <= 0 or config.body_grace < 0 or config.body_min_rate < 0:
        raise ConfigError("body_timeout must be positive; body_grace and body_min_rate not negative")
    if not 0 < config.channel_sync_interval < math.inf:
        raise ConfigError(f"channel_sync_interval must be a positive number of seconds, got "
                          f"{config.channel_sync_interval}")
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
                    "redeem_failures_per_user", "redeem_failures_per_ip", "password_time_cost")),
        *((0 < getattr(accounts, n) < math.inf, f"accounts.{n} must be a positive number, got {getattr(accounts, n)}")
          for n in ("login_window", "redeem_window", "session_hours")),
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


def with_db(config: Config, db_path: str | None) -> Config:
    return config if db_path is None else replace(config, db_path=db_path)
