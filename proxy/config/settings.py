"""The configuration's frozen dataclasses (defaults < TOML file < CHEAPLM_* env < flags:
load.py builds them, checks.py validates them).

Upstream choice: an explicit ``upstream.url`` is used as given (with the key if
one is set). With no URL and no key, the gateway runs the built-in simulated
upstream in-process and says so in its log and in ``/health``. With a key but
no URL, the upstream is Anthropic's API.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from ..catalog import DEFAULT_MODELS, Catalog, apply_overrides

ANTHROPIC_API_URL = "https://api.anthropic.com"
PORTS = range(0, 65536)  # 0: any free port (the one bound is logged)
MAX_WORKERS = 256
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
    login_failures_per_account: int = 20   # within login_window, from clients it never logged in from
    login_failures_per_ip: int = 20        # within login_window, across accounts
    login_window: float = 900.0            # seconds
    login_backoff: float = 1.0             # a client's wait after its 2nd failure in a row on an account, doubling
    login_known_days: float = 30.0         # a client that logged in is known to the account this long
    max_sessions: int = 20                 # live sessions per account (a new login ends the oldest)
    redeem_failures_per_user: int = 10     # wrong, used or expired codes within redeem_window
    redeem_failures_per_ip: int = 30
    redeem_window: float = 3600.0
    session_hours: float = 336.0           # a session's life (14 days)
    password_time_cost: int = 3            # argon2id parameters (the argon2-cffi defaults)
    password_memory_kib: int = 65536
    webhook_secret: str | None = None      # signs POST /api/payments/webhook (payments.SignedWebhook); none: off


@dataclass(frozen=True)
class StripeConfig:
    """``[payments.stripe]``: card payments by Stripe Checkout (proxy/payments/stripe.py)."""

    secret_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)   # the endpoint's signing secret (whsec_...)
    api_base: str = "https://api.stripe.com"  # tests point the library at a local fake
    currency: str = "usd"                     # charged in its cents, one unit per USD of the amount


@dataclass(frozen=True)
class PaymentsConfig:
    """``[payments]``: the bonus table (applied to every provider's credit) and card payments."""

    bonus: tuple[tuple[int, int], ...] = ()   # (paid at or above, API value added), micro-USD, ascending
    stripe: StripeConfig | None = None        # None: card payments are off


@dataclass(frozen=True)
class Config:
    # The ledger: a SQLite file path, a sqlite:/// URL or a postgresql:// URL
    # (storage/location.py); TOML also takes the old name db_path.
    database_url: str = "cheaplm.db"
    host: str = "127.0.0.1"
    port: int = 8080
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    channels: tuple[ChannelConfig, ...] = ()  # [[upstreams]]; none: [upstream] (or the simulator) alone
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    value_multiplier: Decimal = Decimal(30)
    max_body_bytes: int = 32 * 1024 * 1024
    trusted_proxies: tuple[str, ...] = ()
    pass_thinking: bool = False
    # Automatic prompt caching (cache breakpoints for requests that mark none): on for the
    # translated endpoints (Responses, Chat Completions), off for /v1/messages by default.
    auto_cache: bool = True
    auto_cache_messages: bool = False
    # The key that seals thinking into Responses reasoning items (at least 16 characters);
    # unset: a random one kept in a file beside the ledger (proxy/reasoning_key.py).
    responses_secret: str | None = None
    key_cache_seconds: float = 5.0
    transfers_per_minute: int = 20  # per key, for the reseller transfer API
    log_level: str = "INFO"
    model_overrides: Mapping[str, Mapping] = field(default_factory=dict)
    server_tools: Mapping[str, Any] = field(default_factory=dict)  # [server_tools]: kind = USD per use
    # count_tokens (free upstream, so outside the keys' rpm): a bucket per key and one per
    # account, each this many a minute in bursts of as many (Claude Code's /context sends 14 at once).
    count_tokens_per_minute: int = 60
    count_tokens_account_per_minute: int = 120
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
    # How often a running gateway reads the ledger's change feed: a key revoked or changed,
    # a user disabled or enabled, a channel override, made by any process, applies within it.
    change_poll_interval: float = 0.25
    # A fleet's shared state (several workers or nodes): a redis:// URL, or none (every
    # process keeps its own limits). Keys in Redis start with redis_prefix; a command that
    # gets no answer within redis_timeout seconds counts Redis as down (per-node fallback).
    redis_url: str | None = None
    redis_prefix: str = "cheaplm:"
    redis_timeout: float = 0.5
    # Processes serving the port (cheaplm serve --workers): 1 is one process and no supervisor.
    workers: int = 1
    # Seconds an idle keep-alive client connection is kept open before the gateway closes it.
    keep_alive_timeout: float = 75.0
    # Seconds requests in flight get to finish after SIGTERM; streams still going are then
    # ended with an error event (a second before, or a quarter of a shorter grace).
    shutdown_grace: float = 30.0
    # Observability: the log's format (one JSON object a line, or text), and who may read
    # /metrics besides loopback: these networks, or anyone presenting the token.
    log_format: str = "text"
    metrics_networks: tuple[str, ...] = ()
    metrics_token: str | None = None
    accounts: AccountsConfig = field(default_factory=AccountsConfig)
    payments: PaymentsConfig = field(default_factory=PaymentsConfig)

    @property
    def listen_address(self) -> str:
        """host:port, as a bind address (an IPv6 host in brackets)."""
        return bind_address(self.host, self.port)

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


def bind_address(host: str, port: int) -> str:
    """host:port, as a bind address (an IPv6 host in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ConfigError(ValueError):
    pass


