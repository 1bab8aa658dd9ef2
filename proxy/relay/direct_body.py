"""Body chunks of a streamed response written straight to the client's socket.

Under hypercorn's trio worker every ``http.response.body`` message goes through the
ASGI stream, the h11 state machine, a per-connection lock and a shielded
``send_all``: two scheduler round trips and about half of the gateway's CPU per
relayed SSE event. For the relay's streamed responses (HTTP/1.1, plain TCP, chunked
framing) the same bytes can go to the socket with one ``send``.

Only the body chunks take this path. The response head and the terminating chunk
still go through hypercorn, so h11's connection state ends where it would have
ended (keep-alive works), and the frames written here are byte for byte what h11's
chunked writer produces. When anything in the chain is not what is expected
(another server, HTTP/2, TLS, a hypercorn whose internals moved), ``find`` returns
None and the caller keeps to plain ASGI messages.
"""

from __future__ import annotations

import socket
from typing import Callable

import trio
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.trio.tcp_server import TCPServer

from .. import netio
from ..protocol.http1 import chunk_frame


class DirectBody:
    __slots__ = ("_http_stream", "_socket", "_lock")

    def __init__(self, http_stream: HTTPStream, client_socket: socket.socket, lock: trio.Lock) -> None:
        self._http_stream = http_stream
        self._socket = client_socket
        self._lock = lock

    async def write(self, data: bytes) -> bool:
        """Send ``data`` as one chunk. False when this path can't take it (the stream is
        closed, or hypercorn is writing on the connection): the caller sends it as an
        ASGI message instead, and hypercorn deals with it as it would have."""
        if not data:
            return True  # an empty chunk would end the body (hypercorn skips them too)
        if self._http_stream.closed or self._lock.locked():
            return False
        frame = chunk_frame(data)
        try:
            sent = netio.send_nowait(self._socket, frame)
        except OSError:
            return False  # nothing was written; hypercorn's own send sees the broken connection
        if sent < len(frame):
            await self._send_rest(memoryview(frame)[sent:])
        return True

    async def _send_rest(self, rest: memoryview) -> None:
        """The client's receive window is full: wait for it, holding hypercorn's send lock
        so nothing interleaves with a half-written chunk. Shielded like hypercorn's own
        writes: a chunk once started is finished or the connection is broken."""
        self._lock.acquire_nowait()  # free: checked in write() with no await since
        try:
            with trio.CancelScope(shield=True):
                try:
                    await netio.send_rest(self._socket, rest)
                except OSError:
                    return  # the peer is gone; hypercorn's reader reports the disconnect
        finally:
            self._lock.release()


def find(send: Callable, scope: dict) -> DirectBody | None:
    """The direct path for the response that ``send`` belongs to, once its head has
    been sent; None unless it is hypercorn's trio worker serving HTTP/1.1 on plain TCP."""
    if scope.get("http_version") != "1.1":
        return None
    http_stream = getattr(send, "__self__", None)
    if not isinstance(http_stream, HTTPStream):
        return None
    protocol = getattr(http_stream.send, "__self__", None)
    if not isinstance(protocol, H11Protocol):
        return None
    server = getattr(protocol.send, "__self__", None)
    if not isinstance(server, TCPServer):
        return None
    client_socket = netio.raw_socket(getattr(server, "stream", None))  # None under TLS
    lock = getattr(server, "send_lock", None)
    if client_socket is None or not isinstance(lock, trio.Lock) or not hasattr(http_stream, "closed"):
        return None
    return DirectBody(http_stream, client_socket, lock)
