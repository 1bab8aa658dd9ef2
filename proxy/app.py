"""create_app(gateway) -> QuartTrio.

Quart serves the light endpoints (health, models, model info). The metered routes
(POST /v1/messages, count_tokens) are answered by ``RelayRoutes``, a thin ASGI
layer wrapped around Quart's ``asgi_app``, so per-event work never goes through
Quart. Paths are canonicalised first: ``/v1/v1/...`` serves as ``/v1/...`` and
query strings such as ``?beta=true`` are ignored.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import partial
from typing import Any

from quart import Response, g, request
from quart_trio import QuartTrio

from . import errors, transfer
from .adaptors.anthropic import AnthropicAdaptor, parse_count_tokens
from .adaptors.base import with_model
from .adaptors.openai import OpenAIAdaptor
from .asgi import Exchange, canonical_path, encode_headers
from .auth import check_request, presented_key
from .catalog import Model
from .gateway import Gateway
from .relay import handle, new_request_id, read_body
from .upstream.base import UpstreamRequest
from .upstream.status import upstream_error
from storage.base import StoreUnavailable

VERSION = "0.1.0"
QUART_MAX_BODY = 64 * 1024


class RelayRoutes:
    """ASGI middleware: metered routes here, everything else to Quart."""

    def __init__(self, inner, gateway: Gateway) -> None:
        self.inner = inner
        self.gateway = gateway
        self.anthropic = AnthropicAdaptor()
        self.openai = OpenAIAdaptor()
        self.routes = {
            "/v1/messages": self._messages,
            "/v1/chat/completions": self._chat,
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
        await handle(self.gateway, ex, self.anthropic, "/v1/messages")

    async def _chat(self, ex: Exchange) -> None:
        await handle(self.gateway, ex, self.openai, "/v1/messages")

    async def _count_tokens(self, ex: Exchange) -> None:
        """Forwarded upstream, never answered with a made-up figure."""
        gateway = self.gateway
        request_id = new_request_id()
        headers = [(b"request-id", request_id.encode())]
        try:
            key = await gateway.authorize(ex.headers, ex.peer)
            raw = await read_body(gateway, ex)
            body, model = parse_count_tokens(raw, gateway.rules)
            check_request(key, model, False)
            request = UpstreamRequest("/v1/messages/count_tokens", model, ex.headers, partial(with_model, body))
            response = await gateway.upstream.send(request)
            if response.status != 200:
                raise upstream_error(response.status, response.body, response.headers)
        except errors.GatewayError as error:
            await ex.respond_json(error.status, error.anthropic_body(request_id),
                                  headers + encode_headers(error.headers))
            return
        await ex.respond(200, response.body, headers)


def _model_item(model: Model) -> dict[str, Any]:
    created = int(datetime.fromisoformat(model.created_at.replace("Z", "+00:00")).timestamp())
    return {"id": model.id, "object": "model", "created": created, "owned_by": "anthropic",
            "type": "model", "display_name": model.display_name, "created_at": model.created_at}


def _model_info(model: Model) -> dict[str, Any]:
    return {"id": model.id, "display_name": model.display_name, "upstream_id": model.upstream_id,
            "aliases": sorted({model.id.replace(".", "-"), model.upstream_id, *model.aliases} - {model.id}),
            "max_input_tokens": model.max_input, "max_output_tokens": model.max_output,
            "thinking": model.thinking, "vision": model.vision, "endpoints": list(model.endpoints),
            "pricing": {"unit": "USD per 1M tokens", **model.prices.as_usd()}}


def create_app(gateway: Gateway) -> QuartTrio:
    app = QuartTrio("cheaplm", static_folder=None)
    app.url_map.merge_slashes = False  # "/v1/models//x" is a 404 in JSON, not an HTML redirect
    # Quart reads a request's body as it arrives, before the route runs: the routes it
    # serves take small bodies (the metered routes, with big ones, bypass it).
    app.config["MAX_CONTENT_LENGTH"] = QUART_MAX_BODY
    app.config["BODY_TIMEOUT"] = 10

    def error_response(error: errors.GatewayError) -> Response:
        """The transfer API's own shape on its path; otherwise Anthropic clients (they
        send anthropic-version) get the Anthropic shape and anyone else (the OpenAI SDKs
        on the shared /v1/models) the OpenAI shape."""
        if request.path == transfer.PATH:
            return transfer.error_response(error)
        request_id = g.get("request_id") or new_request_id()
        body = error.anthropic_body(request_id) if "anthropic-version" in request.headers \
            else error.openai_body()
        return Response(json.dumps(body), status=error.status, content_type="application/json")

    @app.before_request
    async def _request_id() -> None:
        g.request_id = new_request_id()

    @app.after_request
    async def _add_request_id(response: Response) -> Response:
        response.headers.setdefault("request-id", g.get("request_id") or new_request_id())
        return response

    @app.errorhandler(errors.GatewayError)
    async def _gateway_error(error: errors.GatewayError) -> Response:
        return error_response(error)

    @app.errorhandler(StoreUnavailable)
    async def _store_unavailable(exc: StoreUnavailable) -> Response:
        return error_response(errors.store_unavailable(exc.retry_after))

    @app.errorhandler(404)
    async def _not_found(_exc) -> Response:
        return error_response(errors.not_found(f"No route for {request.method} {request.path}"))

    @app.errorhandler(413)
    async def _too_large(_exc) -> Response:
        return error_response(errors.too_large(QUART_MAX_BODY))

    @app.errorhandler(500)
    async def _server_error(_exc) -> Response:
        return error_response(errors.GatewayError(500, "Internal error; the request was not applied"))

    @app.errorhandler(405)
    async def _bad_method(_exc) -> Response:
        return error_response(errors.GatewayError(405, f"Method {request.method} is not allowed on {request.path}",
                                                  "invalid_request_error"))

    async def presented_record():
        """The key a model listing presents, if any: optional there, but when one is
        presented it must be valid and its restrictions apply."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        return await gateway.authorize(headers, request.remote_addr) if presented_key(headers) else None

    async def listed_models() -> list[Model]:
        """Models for the asking client's protocol (the Anthropic SDK sends
        anthropic-version; OpenAI clients do not), narrowed to a key's allowlist."""
        endpoint = "messages" if "anthropic-version" in request.headers else "chat"
        models = list(gateway.catalog.for_endpoint(endpoint))
        record = await presented_record()
        if record is not None and record.models is not None:
            models = [m for m in models if m.id in record.models]
        return models

    @app.route("/api/hello", methods=["GET", "HEAD"])
    async def hello() -> Response:
        """Claude Code's start-up reachability probe (HEAD /api/hello, no key)."""
        return Response(json.dumps({"ok": True}), content_type="application/json")

    @app.route("/", methods=["GET", "HEAD"])
    async def root() -> Response:
        """Clients probe the base URL (Claude Code sends HEAD /)."""
        return Response(json.dumps({"service": "CheapLM gateway", "version": VERSION,
                                    "endpoints": ["/v1/messages", "/v1/chat/completions", "/v1/models"]}),
                        content_type="application/json")

    @app.get("/health")
    async def health() -> Response:
        return Response(json.dumps({
            "status": "ok", "version": VERSION,
            "upstream": {"url": gateway.upstream.label, "simulated": gateway.simulated},
            "models": len(gateway.catalog.models),
        }), content_type="application/json")

    @app.get("/v1/models")
    async def models() -> Response:
        items = [_model_item(m) for m in await listed_models()]
        ids = [m["id"] for m in items]
        after, before = request.args.get("after_id"), request.args.get("before_id")
        if after in ids:
            items = items[ids.index(after) + 1:]
        elif before in ids:
            items = items[:ids.index(before)]
        try:
            limit = max(1, min(1000, int(request.args.get("limit", 1000))))
        except ValueError:
            raise errors.invalid_request("limit: Input should be a valid integer", "limit") from None
        has_more = len(items) > limit
        items = items[:limit]
        return Response(json.dumps({
            "object": "list", "data": items, "has_more": has_more,
            "first_id": items[0]["id"] if items else None, "last_id": items[-1]["id"] if items else None,
        }), content_type="application/json")

    @app.get("/v1/models/info")
    async def models_info() -> Response:
        return Response(json.dumps({"object": "list", "data": [_model_info(m) for m in gateway.catalog.models]}),
                        content_type="application/json")

    @app.get("/v1/models/<path:model_id>")
    async def model(model_id: str) -> Response:
        record = await presented_record()
        found = gateway.catalog.resolve(model_id)
        if found is not None and record is not None and record.models is not None and found.id not in record.models:
            found = None  # as /v1/models does not list it for this key
        if found is None:
            raise errors.GatewayError(404, f"model: {model_id} is not a model this gateway serves",
                                      code="model_not_found")
        return Response(json.dumps(_model_item(found)), content_type="application/json")

    transfer.register(app, gateway)
    app.asgi_app = RelayRoutes(app.asgi_app, gateway)  # type: ignore[method-assign]
    return app
