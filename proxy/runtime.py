"""The running gateway: builds and owns every service of one server (config, catalog,
store, upstream, key cache, limiters, the meter, metrics and the request log). Built by
serve.py; handed to the app and the relay. The one place that chooses the limiters'
implementation: through Redis when the gateway has the fleet's connection (``shared``),
else in the process."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field

import trio

from .adaptors.base import RequestRules
from .auth import KeyCache, Network, check_address, client_ip, free_tier_limits, presented_key
from .catalog import Catalog
from .config import Config
from .limits.base import Limits
from .limits.local import LocalLimits
from .metering.meter import Meter
from .observe.request_log import REQUESTS, log_request
from .observe.metrics import Metrics
from .outcome import Outcome
from .protocol.thinking_memory import ThinkingMemory, ThinkingStore
from .shared.channels import keep_shared
from .shared.client import SharedRedis
from .shared.thinking import SharedThinking
from .shared.limits import RedisLimits
from .upstream.base import Upstream
from . import errors
from storage.base import KeyRecord, Store, StoreUnavailable


@dataclass
class Gateway:
    """``catalog`` and ``keys`` are built from the config unless given (tests swap them).
    ``after_response``: the nursery that owns work a request does once its response is
    complete (settling a stream); without one that work is done before the handler returns."""

    config: Config
    store: Store
    upstream: Upstream
    catalog: Catalog | None = None
    keys: KeyCache | None = None
    after_response: trio.Nursery | None = None
    reasoning_secret: bytes | None = None  # seals Responses reasoning items (serve: proxy/reasoning_key.py)
    shared: SharedRedis | None = None  # the fleet's Redis (redis_url); none: every state is this process's
    trusted: tuple[Network, ...] = field(init=False, default=())
    rules: RequestRules = field(init=False)
    thinking: ThinkingMemory = field(init=False, default_factory=ThinkingStore)
    metrics: Metrics = field(init=False, default_factory=Metrics)
    limits: Limits = field(init=False)
    meter: Meter = field(init=False)
    request_log: logging.Logger = field(init=False, default_factory=lambda: logging.getLogger(REQUESTS))

    def __post_init__(self) -> None:
        if self.catalog is None:
            self.catalog = self.config.catalog()
        if self.keys is None:
            self.keys = KeyCache(self.store.find_key, self.config.key_cache_seconds, trio.current_time,
                                 adjust=free_tier_limits(self.config.accounts.free_tier_rpm))
        self.trusted = self.config.trusted_networks()
        if self.reasoning_secret is None:  # (in-process gateways: the configured secret, or one of their own)
            secret = self.config.responses_secret
            self.reasoning_secret = secret.encode() if secret else secrets.token_bytes(32)
        self.rules = RequestRules(self.catalog, self.config.max_tokens_policy, self.config.model_fallback)
        local = LocalLimits(trio.current_time, time.time)
        self.limits = local if self.shared is None else RedisLimits(self.shared, local)
        if self.shared is not None:  # a fleet's turns in Redis (this process's store while it is away)
            self.thinking = SharedThinking(self.shared, self.thinking)
        self.meter = Meter(self.store, self.limits.key_limiter(), self.record, self.after_response)
        self.upstream.observe = self.metrics.attempt  # every attempt on every channel

    async def keep(self) -> None:
        """The gateway's own background work, for as long as it runs (its owner starts it
        in its nursery): with a fleet's Redis, renewing its requests' concurrency slots and
        sharing its channels' rests; nothing otherwise."""
        if isinstance(self.limits, RedisLimits):
            await keep_shared(self.limits, self.upstream)

    def record(self, outcome: Outcome) -> None:
        """Every request's outcome, once: the metrics and the request log."""
        self.metrics.record(outcome)
        log_request(self.request_log, outcome)

    async def authorize(self, headers, peer: str | None) -> KeyRecord:
        """The key a request presents (``headers`` lower-cased), accepted, with the
        restrictions that need no body applied: every route that takes a key calls this
        before it reads anything else."""
        try:
            record = await self.keys.authenticate(presented_key(headers))
        except StoreUnavailable as exc:
            raise errors.from_store(exc) from None
        check_address(record, client_ip(peer, headers.get("x-forwarded-for"), self.trusted))
        return record

    @property
    def simulated(self) -> bool:
        return self.config.simulated
