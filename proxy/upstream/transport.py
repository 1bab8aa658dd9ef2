"""A lean HTTP/1.1 transport for httpx on trio: the upstream hot path.

httpx stays the client API (requests, responses, errors); this transport replaces
httpcore underneath, through httpx's documented ``AsyncBaseTransport`` hook,
because on this path httpcore costs more than the whole relay: its pool scans
every connection (with a readability syscall each) on every request and release,
and each body chunk climbs five async-generator layers and h11.

Here: an idle-connection stack per origin (O(1) take and give back, one
readability check on the connection taken), a connection limit, TLS through
trio's SSLStream. Responses are read through ``protocol.http1`` (h11), which hands
back every payload byte of one socket read as one bytes object; raw socket reads go
through ``netio``.
"""

from __future__ import annotations

import ssl
from typing import AsyncIterator

import httpx
import trio

from .. import netio
from ..netio import READ_SIZE, SOCKET_ERRORS
from ..protocol.http1 import ProtocolError, ResponseHead, ResponseReader, request_head

RECENT = 2.0  # seconds an idle connection is trusted without a liveness check


def read_error(exc: BaseException) -> httpx.ReadError:
    """A failed socket read, as httpx's own transports report it."""
    return httpx.ReadError(f"upstream connection failed: {exc}")


class _Connection:
    __slots__ = ("origin", "stream", "buffer", "reusable", "idle_since", "_raw", "_receive_buffer")

    def __init__(self, origin: tuple[bytes, str, int], stream: trio.abc.Stream | None,
                 receive_buffer: memoryview | None = None) -> None:
        self.origin = origin
        self.stream = stream
        self.buffer = b""
        self.reusable = True
        self.idle_since = 0.0
        self._raw: object = None
        self._receive_buffer = receive_buffer if receive_buffer is not None else netio.receive_buffer()

    async def receive(self) -> bytes:
        """The next bytes from the server, b"" when it closed the connection. On plain
        TCP through ``netio.receive`` (readable first, then one recv into the transport's
        shared buffer); TLS through the stream."""
        raw = self._raw
        if raw is None:
            raw = self._raw = netio.raw_socket(self.stream) or False
        try:
            if raw:
                return await netio.receive(raw, self._receive_buffer)
            return await self.stream.receive_some(READ_SIZE)
        except SOCKET_ERRORS as exc:
            raise read_error(exc) from None

    async def read(self) -> bytes:
        """The next bytes from the server, which must not have closed the connection."""
        data = await self.receive()
        if not data:
            raise httpx.RemoteProtocolError("upstream closed the connection")
        return data

    def looks_dead(self) -> bool:
        """An idle keep-alive connection the server has closed reads as ready (EOF)."""
        sock = getattr(self.stream, "socket", None)
        if sock is None:  # TLS: ask the transport underneath
            sock = getattr(getattr(self.stream, "transport_stream", None), "socket", None)
        return sock is not None and sock.is_readable()

    async def aclose(self) -> None:
        self.reusable = False
        if self.stream is None:
            return
        with trio.CancelScope(shield=True):
            try:
                await self.stream.aclose()
            except SOCKET_ERRORS:
                pass


class TrioHTTP11Transport(httpx.AsyncBaseTransport):
    def __init__(self, max_connections: int = 4096, connect_timeout: float = 10.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._idle: dict[tuple[bytes, str, int], list[_Connection]] = {}
        self._limit = trio.CapacityLimiter(max_connections)
        self._connect_timeout = connect_timeout
        self._ssl_context = ssl_context
        self._closed = False
        # One receive buffer for every connection: a read copies out what arrived before
        # any other task runs (trio runs one at a time, and a read never awaits after recv).
        self._receive_buffer = netio.receive_buffer()

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
            self._ssl_context.set_alpn_protocols(["http/1.1"])
        return self._ssl_context

    async def _connect(self, origin: tuple[bytes, str, int]) -> trio.abc.Stream:
        scheme, host, port = origin
        try:
            with trio.fail_after(self._connect_timeout):
                stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
                if scheme == b"https":
                    stream = trio.SSLStream(stream, self._ssl(), server_hostname=host, https_compatible=True)
                    await stream.do_handshake()
        except trio.TooSlowError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except (OSError, trio.BrokenResourceError) as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from None
        return stream

    async def _take(self, origin: tuple[bytes, str, int]) -> _Connection:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            # Servers close idle keep-alive connections after seconds, not milliseconds: only a
            # connection idle a while is worth the readability syscall.
            if trio.current_time() - connection.idle_since < RECENT or not connection.looks_dead():
                return connection
            await self._discard(connection)
        connection = _Connection(origin, None, self._receive_buffer)  # holds its place in the limit while connecting
        await self._limit.acquire_on_behalf_of(connection)
        try:
            connection.stream = await self._connect(origin)
        except BaseException:
            self._limit.release_on_behalf_of(connection)
            raise
        return connection

    async def _release(self, connection: _Connection, complete: bool) -> None:
        """A response is done with its connection: keep it for reuse when its body was
        read to the end and it may be reused, close it otherwise."""
        if complete and connection.reusable and not self._closed:
            connection.idle_since = trio.current_time()
            self._idle.setdefault(connection.origin, []).append(connection)
        else:
            await self._discard(connection)

    async def _discard(self, connection: _Connection) -> None:
        await connection.aclose()
        self._limit.release_on_behalf_of(connection)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.raw_scheme
        port = url.port or (443 if scheme == b"https" else 80)
        origin = (scheme, url.host, port)
        connection = await self._take(origin)
        try:
            await self._send_request(connection, request)
            reader = ResponseReader(request.method.encode())
            head = await self._read_head(connection, reader)
        except BaseException as exc:
            await self._discard(connection)
            if isinstance(exc, SOCKET_ERRORS):
                raise read_error(exc) from None
            raise
        return httpx.Response(head.status, headers=head.headers, stream=_Body(self, connection, reader),
                              extensions={"http_version": b"HTTP/1.1"})

    async def _send_request(self, connection: _Connection, request: httpx.Request) -> None:
        body = b"".join([part async for part in request.stream])
        head = request_head(request.method.encode(), request.url.raw_path, request.headers.raw, len(body))
        await connection.stream.send_all(head + body)

    async def _read_head(self, connection: _Connection, reader: ResponseReader) -> ResponseHead:
        """The response head, from what the connection holds and reads; the body's first
        bytes stay in ``reader``."""
        if connection.buffer:
            reader.feed(connection.buffer)
            connection.buffer = b""
        try:
            while (head := reader.read_head()) is None:
                reader.feed(await connection.read())
        except ProtocolError as exc:
            raise httpx.RemoteProtocolError(f"malformed upstream response: {exc}") from None
        connection.reusable = head.keep_alive and head.framing != "close"
        return head

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                await self._discard(connection)


class _Body(httpx.AsyncByteStream):
    """A response body: yields payload bytes as they arrive; gives the connection back
    to the pool when the body was read to its end, closes it otherwise."""

    __slots__ = ("transport", "connection", "reader", "done")

    def __init__(self, transport: TrioHTTP11Transport, connection: _Connection, reader: ResponseReader) -> None:
        self.transport = transport
        self.connection = connection
        self.reader = reader
        self.done = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        """The payload generator itself, not one that re-yields it: a layer per relayed
        event costs more than the event's own parsing."""
        return self._payload()

    async def _payload(self) -> AsyncIterator[bytes]:
        """One read, one feed, every payload byte it completed yielded together (a chunk
        cut by the read as far as it came). b"" from the connection tells the reader the
        server closed it: the end of a read-until-close body, an error for the others."""
        connection, reader = self.connection, self.reader
        try:
            while True:
                data, done = reader.read_payload()
                if data:
                    yield data
                if done:
                    break
                reader.feed(await connection.receive())
        except ProtocolError as exc:
            raise httpx.RemoteProtocolError(f"malformed upstream body: {exc}") from None
        connection.buffer = reader.unread()
        self.done = True

    async def aclose(self) -> None:
        connection, self.connection = self.connection, None
        if connection is None:
            return
        await self.transport._release(connection, self.done)
