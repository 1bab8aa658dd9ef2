"""The httpx upstream: one shared connection pool, timeouts as trio cancel scopes.

The one place transport errors become GatewayErrors. The client's key is never
forwarded: the request headers are built here from scratch, with the upstream
key injected.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator, Mapping

import httpx
import trio

from .. import errors
from ..config import UpstreamConfig
from .base import DEFAULT_ANTHROPIC_VERSION, FORWARDED_HEADERS, UpstreamResponse


class HttpUpstream:
    def __init__(self, url: str, config: UpstreamConfig, label: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.config = config
        self.label = label or self.url
        limits = httpx.Limits(max_connections=config.max_connections,
                              max_keepalive_connections=config.max_connections, keepalive_expiry=60.0)
        # Connect timeout inside httpcore; first-byte and idle timeouts are cancel scopes below.
        timeout = httpx.Timeout(connect=config.connect_timeout, read=None, write=None, pool=None)
        self._client = httpx.AsyncClient(base_url=self.url, limits=limits, timeout=timeout,
                                         http1=True, http2=False, trust_env=False)

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

    def _request(self, path: str, body: bytes, headers: Mapping[str, str]) -> httpx.Request:
        return self._client.build_request("POST", path, content=body, headers=self._headers(headers))

    async def send(self, path: str, body: bytes, headers: Mapping[str, str]) -> UpstreamResponse:
        request = self._request(path, body, headers)
        with _mapped_errors():
            with trio.fail_after(self.config.first_byte_timeout):
                response = await self._client.send(request)
        return UpstreamResponse(response.status_code, tuple(response.headers.items()), response.content)

    @asynccontextmanager
    async def stream(self, path: str, body: bytes, headers: Mapping[str, str]) -> AsyncIterator["HttpStream"]:
        request = self._request(path, body, headers)
        with _mapped_errors():
            with trio.fail_after(self.config.first_byte_timeout):
                response = await self._client.send(request, stream=True)
        try:
            yield HttpStream(response, self.config.idle_timeout)
        finally:
            with trio.CancelScope(shield=True):
                await response.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()


class HttpStream:
    def __init__(self, response: httpx.Response, idle_timeout: float) -> None:
        self._response = response
        self._idle = idle_timeout
        self.status = response.status_code
        self.headers = tuple(response.headers.items())

    async def chunks(self) -> AsyncIterator[bytes]:
        raw = self._response.aiter_raw()
        with _mapped_errors():
            while True:
                with trio.fail_after(self._idle):
                    try:
                        chunk = await raw.__anext__()
                    except StopAsyncIteration:
                        return
                yield chunk

    async def read(self) -> bytes:
        with _mapped_errors():
            with trio.fail_after(self._idle):
                return await self._response.aread()


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
