"""The floor: the least a trio relay can do per request and per event.

``python -m bench.floor --port P --upstream URL`` accepts HTTP/1.1 connections,
forwards each request's bytes unchanged to the upstream over one keep-alive
connection per client, and pipes the response bytes back as they arrive (one
``send`` per upstream read, the chunked framing left as it is). No auth, no
parsing of the stream, no billing, no ASGI server: with ``python -m bench --floor``
it runs as an arm pinned to the gateway's core, so the gateway's figures can be read
against what trio and the kernel cost on their own.

Not a product: it trusts the upstream's framing and serves only what the bench sends.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from urllib.parse import urlsplit

import trio

from proxy.upstream.transport import receive  # the gateway's own upstream read

READ_SIZE = 65536




async def _send(sock, data: bytes) -> None:
    """One send when the socket takes it all (as the gateway's direct body path does)."""
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view):]
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)


def _head_length(buffer: bytes) -> int:
    """Bytes of the message head and its Content-Length body (requests the bench sends)."""
    end = buffer.index(b"\r\n\r\n") + 4
    for line in buffer[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return end + int(value)
    return end


class ChunkTracker:
    """Follows chunked framing across reads, only to tell where the body ends (no
    trailers: the simulator sends none)."""

    __slots__ = ("payload_left", "final_left", "line")

    def __init__(self) -> None:
        self.payload_left = 0  # payload bytes plus the CRLF after them still to come
        self.final_left = 0    # bytes of the CRLF closing the last chunk still to come
        self.line = b""        # a chunk-size line cut by a read

    def feed(self, data: bytes) -> int:
        """-1 while the body goes on; else how many bytes of ``data`` belong to it."""
        position = 0
        while position < len(data):
            if self.final_left:
                take = min(self.final_left, len(data) - position)
                position += take
                self.final_left -= take
                return -1 if self.final_left else position
            if self.payload_left:
                take = min(self.payload_left, len(data) - position)
                position += take
                self.payload_left -= take
                continue
            end = data.find(b"\n", position)
            if end < 0:
                self.line += data[position:]
                return -1
            line, self.line = self.line + data[position:end], b""
            position = end + 1
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size:
                self.payload_left = size + 2
            else:
                self.final_left = 2
        return -1


async def _relay_response(upstream, client, receive_buffer: memoryview) -> bytes:
    """Pipe one response from ``upstream`` to ``client``; returns bytes read past it."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = await receive(upstream, receive_buffer)
        if not data:
            raise trio.BrokenResourceError("upstream closed")
        buffer += data
    head_end = buffer.index(b"\r\n\r\n") + 4
    head = buffer[:head_end].lower()
    if b"transfer-encoding: chunked" not in head:
        total = _head_length(buffer)
        while len(buffer) < total:
            data = await receive(upstream, receive_buffer)
            if not data:
                raise trio.BrokenResourceError("upstream closed")
            buffer += data
        await _send(client, buffer[:total])
        return buffer[total:]
    tracker = ChunkTracker()
    data = buffer[head_end:]
    used = tracker.feed(data)
    await _send(client, buffer[:head_end + (len(data) if used < 0 else used)])
    while used < 0:
        data = await receive(upstream, receive_buffer)
        if not data:
            raise trio.BrokenResourceError("upstream closed")
        used = tracker.feed(data)
        await _send(client, data if used < 0 else data[:used])
    return data[used:]


async def _connection(upstream_address: tuple[str, int], receive_buffer: memoryview,
                      stream: trio.SocketStream) -> None:
    client = stream.socket._sock
    upstream_stream: trio.SocketStream | None = None
    buffer = b""
    try:
        while True:
            while b"\r\n\r\n" not in buffer:
                data = await receive(client, receive_buffer)
                if not data:
                    return
                buffer += data
            total = _head_length(buffer)
            while len(buffer) < total:
                data = await receive(client, receive_buffer)
                if not data:
                    return
                buffer += data
            request, buffer = buffer[:total], buffer[total:]
            if upstream_stream is None:
                upstream_stream = await trio.open_tcp_stream(*upstream_address)
            upstream = upstream_stream.socket._sock
            await _send(upstream, request)
            leftover = await _relay_response(upstream, client, receive_buffer)
            if leftover:  # the bench never pipelines: a stray byte means lost framing
                return
    except (OSError, trio.BrokenResourceError):
        return
    finally:
        if upstream_stream is not None:
            await upstream_stream.aclose()
        await stream.aclose()


async def serve_floor(host: str, port: int, upstream_url: str, *,
                      task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    parts = urlsplit(upstream_url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=4096)
    task_status.started(listeners[0].socket.getsockname()[1])
    receive_buffer = memoryview(bytearray(READ_SIZE))  # every read's, copied out before any await
    await trio.serve_listeners(partial(_connection, address, receive_buffer), listeners)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the simulator's URL")
    args = parser.parse_args(argv)
    try:
        trio.run(partial(serve_floor, args.host, args.port, args.upstream))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
