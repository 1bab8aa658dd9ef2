"""Thin ASGI plumbing for the relay routes (the hot path stays off the Quart layer).

``Exchange`` wraps one HTTP request's scope/receive/send: read the body with a
size limit, answer whole, or stream; ``watch_disconnect`` cancels a scope when
the client goes away. ``canonical_path`` is the path a request is routed by.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterable

import trio

from . import direct_body
from .. import errors
from ..protocol.json_body import JSON_TYPE, json_bytes

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

NOSNIFF = (b"x-content-type-options", b"nosniff")  # on every response (the app adds it to Quart's)
SSE_HEADERS = ((b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no"), NOSNIFF)
JSON_HEADER = (b"content-type", JSON_TYPE.encode())


# API paths also served without their /v1 prefix (a client given a base URL without /v1
# that appends only /messages, as OpenCode does).
UNPREFIXED = ("/messages", "/chat/completions", "/responses", "/models")


def canonical_path(path: str) -> str:
    """``/v1/v1/messages`` (SDK given a base URL ending in /v1) and ``/messages`` ->
    ``/v1/messages``; no trailing slash."""
    while path.startswith("/v1/v1/") or path == "/v1/v1":
        path = path[3:]
    path = path.rstrip("/") or "/"
    if any(path == p or path.startswith(p + "/") for p in UNPREFIXED):
        path = "/v1" + path
    return path


def encode_headers(pairs: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs]


class Exchange:
    __slots__ = ("scope", "receive", "send", "headers", "started", "finished", "disconnected", "_direct")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.started = False
        self.finished = False
        self.disconnected = False
        self._direct: direct_body.DirectBody | None = None

    @property
    def peer(self) -> str | None:
        client = self.scope.get("client")
        return client[0] if client else None

    async def read_body(self, limit: int, timeout: float = 120.0, grace: float = 10.0,
                        min_rate: float = 0.0) -> bytes:
        """The whole body: at most ``limit`` bytes (413), within ``timeout`` seconds and,
        once ``grace`` seconds have passed, arriving at ``min_rate`` bytes/s at least
        (408): a client trickling its body does not hold a connection and its buffers."""
        declared = self.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise errors.too_large(limit)
        parts: list[bytes] = []
        size = 0
        start = trio.current_time()
        overall = start + timeout
        # (the first deadline set once, with the scope: moving a deadline is not free)
        with trio.CancelScope(deadline=min(overall, start + grace) if min_rate else overall) as reading:
            while True:
                if min_rate and size:
                    reading.deadline = min(overall, start + grace + size / min_rate)
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    self.disconnected = True
                    raise trio.BrokenResourceError("client disconnected while sending the body")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise errors.too_large(limit)
                parts.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(parts)
        raise errors.GatewayError(408, f"Request body not received in time ({size} bytes after "
                                       f"{trio.current_time() - start:.0f} s)", "timeout_error")

    async def respond(self, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
        self.finished = True
        await self.send({"type": "http.response.start", "status": status,
                         "headers": [JSON_HEADER, NOSNIFF, (b"content-length", str(len(body)).encode()), *headers]})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    async def respond_json(self, status: int, payload: Any, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
        await self.respond(status, json_bytes(payload), headers)

    async def respond_error(self, error: errors.GatewayError, body: dict, request_id: str) -> None:
        """``error`` answered whole: ``body`` (the route's shape of it), the request id and
        the error's own headers (``retry-after``)."""
        await self.respond_json(error.status, body, [(b"request-id", request_id.encode()),
                                                     *encode_headers(error.headers)])

    async def start_stream(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        self.started = True
        await self.send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *headers]})
        self._direct = direct_body.find(self.send, self.scope)

    async def write(self, chunk: bytes) -> None:
        direct = self._direct
        if direct is not None and await direct.write(chunk):
            return
        await self.send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def end_stream(self, last: bytes = b"") -> None:
        self.finished = True
        await self.send({"type": "http.response.body", "body": last, "more_body": False})

    async def watch_disconnect(self, scope: trio.CancelScope) -> None:
        """Run beside a response: cancel ``scope`` when the client disconnects before
        the response is complete (the server also reports a disconnect after it)."""
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                if not self.finished:
                    self.disconnected = True
                    scope.cancel()
                return
