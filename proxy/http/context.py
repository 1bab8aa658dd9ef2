"""What a Quart view reads from its app and its request: the gateway (the one way it
reaches a blueprint: attached to the app by create_app, read with ``current_gateway``),
the request's headers, and the key the request presents."""

from __future__ import annotations

from quart import Quart, current_app, request

from ..auth import presented_key
from ..relay.drain import StreamDrain
from ..runtime import Gateway
from storage.base import KeyRecord

EXTENSION = "cheaplm.gateway"
DRAIN = "cheaplm.drain"


def attach(app: Quart, gateway: Gateway, drain: StreamDrain) -> None:
    """Before any blueprint is registered: blueprints may read it as they are set up."""
    app.extensions[EXTENSION] = gateway
    app.extensions[DRAIN] = drain


def current_drain() -> StreamDrain:
    """What a graceful shutdown ends the streams with (and whether one has begun)."""
    return current_app.extensions[DRAIN]


def gateway_of(app: Quart) -> Gateway:
    return app.extensions[EXTENSION]


def current_gateway() -> Gateway:
    return gateway_of(current_app)


def request_headers() -> dict[str, str]:
    """The request's headers with lower-cased names, as ``Gateway.authorize`` takes them
    (X-Forwarded-For's every line)."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    if "x-forwarded-for" in headers:
        headers["x-forwarded-for"] = every_line("x-forwarded-for") or ""
    return headers


def every_line(name: str) -> str | None:
    """A list header's lines, in order, as one value (RFC 9110): a proxy may add its own
    line after the client's (HAProxy's ``option forwardfor``), and the last entry is the
    one that counts, not the first line's."""
    lines = request.headers.getlist(name)
    return ", ".join(lines) if lines else None


async def authorize(headers: dict[str, str] | None = None) -> KeyRecord:
    """The key the request presents, accepted (401/403 otherwise)."""
    return await current_gateway().authorize(headers or request_headers(), request.remote_addr)


async def presented_record() -> KeyRecord | None:
    """The key a request presents where a key is optional (a model listing): when one
    is presented it must be valid, and its restrictions apply."""
    headers = request_headers()
    return await authorize(headers) if presented_key(headers) else None
