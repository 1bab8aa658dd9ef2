"""Which wire shape an error leaves the Quart side in, and the one exit for it.

A shape is a function (error, request id) -> JSON body. The Anthropic and OpenAI
shapes are GatewayError's own renderings. A blueprint with a shape of its own (the
transfer API) claims its paths for it, so that Quart's own errors there (405, 413)
answer in that shape too. Elsewhere the client picks: Anthropic clients send
``anthropic-version``; anyone else (the OpenAI SDKs on the shared /v1/models) gets
the OpenAI shape.
"""

from __future__ import annotations

from typing import Callable

from quart import Quart, Response, current_app, g, request

from .. import errors
from ..errors import GatewayError
from ..ids import new_request_id
from .responses import json_response
from storage.base import StoreError

Shape = Callable[[GatewayError, str], dict]
CLAIMS = "cheaplm.error_shapes"


def anthropic(error: GatewayError, request_id: str) -> dict:
    return error.anthropic_body(request_id)


def openai(error: GatewayError, request_id: str) -> dict:
    return error.openai_body()


def claim(app: Quart, path: str, shape: Shape) -> None:
    """Errors on ``path`` (and below it, when it ends with "/") answer in ``shape``."""
    app.extensions.setdefault(CLAIMS, {})[path] = shape


def shape_for_request() -> Shape:
    path = request.path
    for claimed, shape in current_app.extensions.get(CLAIMS, {}).items():
        if path == claimed or (claimed.endswith("/") and path.startswith(claimed)):
            return shape
    return anthropic if "anthropic-version" in request.headers else openai


def error_response(error: GatewayError) -> Response:
    """Every error a Quart route or Quart itself answers with leaves here."""
    body = shape_for_request()(error, g.get("request_id") or new_request_id())
    return json_response(body, error.status, error.headers)


async def _gateway_error(error: GatewayError) -> Response:
    return error_response(error)


async def _store_error(exc: StoreError) -> Response:
    return error_response(errors.from_store(exc))


async def _not_found(_exc) -> Response:
    return error_response(errors.not_found(f"No route for {request.method} {request.path}"))


async def _bad_method(_exc) -> Response:
    return error_response(GatewayError(405, f"Method {request.method} is not allowed on {request.path}",
                                       "invalid_request_error"))


async def _too_large(_exc) -> Response:
    return error_response(errors.too_large(current_app.config["MAX_CONTENT_LENGTH"]))


async def _server_error(_exc) -> Response:
    return error_response(GatewayError(500, "Internal error; the request was not applied"))


def install(app: Quart) -> None:
    """Gateway and storage errors raised by any route, and Quart's own 404, 405, 413
    and 500, all through ``error_response``."""
    app.register_error_handler(GatewayError, _gateway_error)
    app.register_error_handler(StoreError, _store_error)
    app.register_error_handler(404, _not_found)
    app.register_error_handler(405, _bad_method)
    app.register_error_handler(413, _too_large)
    app.register_error_handler(500, _server_error)
