"""The metered routes, answered on raw ASGI in front of Quart: per-event work never
goes through Quart. Paths are canonicalised first (``/v1/v1/...`` and ``/messages``
serve as ``/v1/...``; query strings such as ``?beta=true`` are ignored), for every
request, so Quart routes by the canonical path too."""

from __future__ import annotations

import secrets
from functools import partial

from ..adaptors.anthropic import AnthropicAdaptor, parse_count_tokens
from ..adaptors.base import with_model
from ..adaptors.openai import OpenAIAdaptor
from ..adaptors.responses import ResponsesAdaptor
from ..auth import check_request
from ..errors import GatewayError
from ..runtime import Gateway
from ..ids import new_request_id
from ..protocol.reasoning_seal import ReasoningSeal
from .drain import StreamDrain
from .flow import handle, read_body
from ..upstream.base import UpstreamRequest
from ..upstream.status import upstream_error
from .exchange import Exchange, canonical_path


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
        await handle(self.gateway, ex, self.anthropic, "/v1/messages", self.drain)

    async def _chat(self, ex: Exchange) -> None:
        await handle(self.gateway, ex, self.openai, "/v1/messages", self.drain)

    async def _responses(self, ex: Exchange) -> None:
        await handle(self.gateway, ex, self.responses, "/v1/messages", self.drain)

    async def _count_tokens(self, ex: Exchange) -> None:
        """Forwarded upstream, never answered with a made-up figure."""
        gateway = self.gateway
        request_id = new_request_id()
        try:
            key = await gateway.authorize(ex.headers, ex.peer)
            raw = await read_body(gateway, ex)
            body, model = parse_count_tokens(raw, gateway.rules)
            check_request(key, model, False)
            # A request like any other for the key's rpm and concurrency (it costs no
            # tokens): else a limited key drives the operator's credential without bound.
            admission = await gateway.meter.limiter.admit(key.id, key.limits, 0)
            try:
                request = UpstreamRequest("/v1/messages/count_tokens", model, ex.headers, partial(with_model, body))
                response = await gateway.upstream.send(request)
            finally:
                if admission is not None:
                    await admission.finish(0)
            if response.status != 200:
                raise upstream_error(response.status, response.body, response.headers)
        except GatewayError as error:
            await ex.respond_error(error, self.anthropic.error_body(error, request_id), request_id)
            return
        await ex.respond(200, response.body, [(b"request-id", request_id.encode()),
                                              *(admission.headers if admission is not None else ())])
