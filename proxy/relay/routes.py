"""The metered routes, answered on raw ASGI in front of Quart: per-event work never
goes through Quart. Paths are canonicalised first (``/v1/v1/...`` and ``/messages``
serve as ``/v1/...``; query strings such as ``?beta=true`` are ignored), for every
request, so Quart routes by the canonical path too."""

from __future__ import annotations

import secrets
import time
from functools import partial
from typing import Any, NamedTuple

import trio

from ..adaptors.anthropic import AnthropicAdaptor, parse_count_tokens
from ..adaptors.base import RequestRules, with_model
from ..catalog import Model
from ..adaptors.openai import OpenAIAdaptor
from ..adaptors.responses import ResponsesAdaptor
from ..errors import GatewayError, billing, from_store
from ..metering.ticket import CLIENT_CLOSED
from ..outcome import Outcome
from ..runtime import Gateway
from ..ids import new_request_id
from ..protocol.reasoning_seal import ReasoningSeal
from .drain import StreamDrain
from .flow import Known, checked_request, handle
from ..upstream.base import UpstreamRequest
from ..upstream.status import upstream_error
from .account_rates import AccountRates
from .exchange import Exchange, canonical_path
from storage.base import KeyRecord, StoreError


class _Count(NamedTuple):
    """A count_tokens body: what to forward, and its model (never a stream)."""

    body: dict[str, Any]
    model: Model
    stream: bool = False

    @classmethod
    def parse(cls, raw: bytes, rules: RequestRules) -> "_Count":
        return cls(*parse_count_tokens(raw, rules))


class RelayRoutes:
    """ASGI middleware: metered routes here, everything else to Quart."""

    def __init__(self, inner, gateway: Gateway, drain: StreamDrain | None = None) -> None:
        self.inner = inner
        self.gateway = gateway
        self.drain = drain if drain is not None else StreamDrain()  # ended by a graceful shutdown
        config = gateway.config
        self.anthropic = AnthropicAdaptor(auto_cache=config.auto_cache_messages)
        self.openai = OpenAIAdaptor(auto_cache=config.auto_cache)
        self.responses = ResponsesAdaptor(ReasoningSeal(gateway.reasoning_secret, secrets.token_bytes),
                                          auto_cache=config.auto_cache)
        self.routes = {
            "/v1/messages": self._messages,
            "/v1/chat/completions": self._chat,
            "/v1/responses": self._responses,
            "/v1/messages/count_tokens": self._count_tokens,
        }
        self.rates = AccountRates(gateway)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            path = canonical_path(scope["path"])
            if path != scope["path"]:
                scope = {**scope, "path": path, "raw_path": path.encode()}
            route = self.routes.get(path)
            if route is not None and scope["method"] == "POST":
                await route(Exchange(scope, receive, send))
                return
        await self.inner(scope, receive, send)

    async def _messages(self, ex: Exchange) -> None:
        await handle(self.gateway, ex, self.anthropic, "/v1/messages", self.rates, self.drain)

    async def _chat(self, ex: Exchange) -> None:
        await handle(self.gateway, ex, self.openai, "/v1/messages", self.rates, self.drain)

    async def _responses(self, ex: Exchange) -> None:
        await handle(self.gateway, ex, self.responses, "/v1/messages", self.rates, self.drain)

    async def _count_tokens(self, ex: Exchange) -> None:
        """Forwarded upstream, never answered with a made-up figure. Free upstream, so
        outside the key's rpm and concurrency, within its own buckets (account_rates.py);
        it needs a positive balance or the free tier. Recorded (request log, metrics) as
        every request is, charged nothing."""
        gateway = self.gateway
        request_id = new_request_id()
        started = time.perf_counter()
        known = Known()
        response = None
        try:
            key, counted = await checked_request(gateway, ex, _Count.parse, known)
            await self._may_count(key)
            await self.rates.admit_count(key)
            request = UpstreamRequest("/v1/messages/count_tokens", counted.model, ex.headers,
                                      partial(with_model, counted.body))
            response = await gateway.upstream.send(request)
            if response.status != 200:
                raise upstream_error(response.status, response.body, response.headers)
        except GatewayError as error:
            self._record(request_id, started, known, response, error.status, error.error_type)
            await ex.respond_error(error, self.anthropic.error_body(error, request_id), request_id)
            return
        except trio.BrokenResourceError:  # the client left while sending its body
            self._record(request_id, started, known, None, CLIENT_CLOSED, "client_disconnected")
            return
        self._record(request_id, started, known, response, 200, None)
        await ex.respond(200, response.body, [(b"request-id", request_id.encode())])

    async def _may_count(self, key: KeyRecord) -> None:
        """A paying account counts while it has money; the free tier counts at $0."""
        if key.free_tier:
            return
        try:
            account = await self.gateway.store.get_account(key.username)
        except StoreError as exc:
            raise from_store(exc) from None
        if account.balance <= 0:
            raise billing("Insufficient balance: counting tokens needs a positive balance. Top up your balance.")

    def _record(self, request_id: str, started: float, known: Known, response, status: int,
                error_type: str | None) -> None:
        key, model = known.key, known.parsed.model if known.parsed else None
        self.gateway.record(Outcome(
            request_id, "count_tokens", status, key.username if key else None, key.prefix if key else None,
            model.id if model else None, False, response.channel if response else None,
            response.attempts if response else 0, error_type,
            duration_ms=round((time.perf_counter() - started) * 1000, 3)))
