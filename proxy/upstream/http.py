"""The httpx upstream: one shared connection pool, timeouts as trio cancel scopes.

The one place transport errors become GatewayErrors. The client's key is never
forwarded: the request headers are built here from scratch, with the upstream
key injected.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable, Mapping

import httpx
import trio

from .. import errors
from ..config import UpstreamConfig
from .base import DEFAULT_ANTHROPIC_VERSION, FORWARDED_HEADERS, UpstreamRequest, UpstreamResponse, redacted_url
from .transport import TrioHTTP11Transport


class HttpUpstream:
    """httpx requests through the lean trio transport. The transport is called
    directly: AsyncClient's layers (URL merging, cookies, auth and redirect
    handling) do nothing this relay needs and cost a tenth of a request."""

    def __init__(self, url: str, config: UpstreamConfig, label: str | None = None,
                 model_ids: Mapping[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self.config = config
        self.label = label or redacted_url(self.url)  # shown in /health and the log: no credentials
        self.url_label = redacted_url(self.url)
        # This provider's name for a catalog model, where it is not the catalog's upstream id.
        self.model_ids = dict(model_ids or {})
        # The connect timeout lives in the transport; first-byte and idle timeouts are cancel scopes.
        self._transport = TrioHTTP11Transport(max_connections=config.max_connections,
                                              connect_timeout=config.connect_timeout)
        self._urls: dict[str, httpx.URL] = {}

    @property
    def idle_timeout(self) -> float:
        return self.config.idle_timeout

    def _headers(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept-encoding": "identity",
                   "anthropic-version": DEFAULT_ANTHROPIC_VERSION}
        for name in FORWARDED_HEADERS:
            value = client_headers.get(name)
            if value:
                headers[name] = value
        if self.config.api_key:
            headers["x-api-key"] = self.config.api_key
        return headers

    def _request(self, request: UpstreamRequest) -> httpx.Request:
        url = self._urls.get(request.path)
        if url is None:
            url = self._urls[request.path] = httpx.URL(self.url + request.path)
        body = request.body(self.model_ids.get(request.model.id))  # the model id set at send time
        return httpx.Request("POST", url, content=body, headers=self._headers(request.headers))

    async def _open(self, request: UpstreamRequest) -> httpx.Response:
        outgoing = self._request(request)
        request.attempts += 1
        with _mapped_errors():
            with trio.fail_after(self.config.first_byte_timeout):
                return await self._transport.handle_async_request(outgoing)

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        response = await self._open(request)
        try:
            with _mapped_errors():
                with trio.fail_after(self.config.first_byte_timeout):
                    content = await response.aread()
        finally:
            with trio.CancelScope(shield=True):
                await response.aclose()
        if response.status_code != 200:
            content = self._unquoted(content)
        return UpstreamResponse(response.status_code, tuple(response.headers.items()), content)

    def _unquoted(self, error_body: bytes) -> bytes:
        """An error body (its message goes to the client) without this channel's key, which
        some providers quote back."""
        key = self.config.api_key
        return error_body.replace(key.encode(), b"[redacted]") if key and key.encode() in error_body else error_body

    @asynccontextmanager
    async def stream(self, request: UpstreamRequest) -> AsyncIterator["HttpStream"]:
        response = await self._open(request)
        try:
            yield HttpStream(response, self.config.idle_timeout, self._unquoted)
        finally:
            with trio.CancelScope(shield=True):
                await response.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()


class HttpStream:
    def __init__(self, response: httpx.Response, idle_timeout: float,
                 unquoted: Callable[[bytes], bytes] = lambda body: body) -> None:
        self._response = response
        self._idle = idle_timeout
        self._unquoted = unquoted
        self.status = response.status_code
        self.headers = tuple(response.headers.items())
        self.channel, self.attempts = "", 1

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive. No timeout here: the reader's idle scope covers it."""
        # The transport's body stream itself: httpx's aiter_raw would re-chunk and re-yield
        # every piece, a layer per relayed event for nothing.
        with _mapped_errors():
            async for chunk in self._response.stream:
                yield chunk

    async def read(self) -> bytes:
        with _mapped_errors():
            with trio.fail_after(self._idle):
                return self._unquoted(await self._response.aread())


class _mapped_errors:
    """httpx and timeout errors -> GatewayError (the one mapping place)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None:
            return False
        if isinstance(exc, trio.TooSlowError):
            raise errors.upstream_timeout("response") from exc
        if isinstance(exc, httpx.TimeoutException):
            raise errors.upstream_timeout("connect") from exc
        if isinstance(exc, httpx.ConnectError):
            raise errors.upstream_unreachable("connection refused or failed") from exc
        if isinstance(exc, httpx.TransportError):
            raise errors.GatewayError(502, f"Upstream connection failed: {type(exc).__name__}",
                                      error_type="api_error") from exc
        return False
