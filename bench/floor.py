"""The floor: the least a trio relay can do per request and per event.

``python -m bench.floor --port P --upstream URL`` accepts connections and gives each
its own connection to the upstream, then pipes bytes both ways as they arrive: one
``send`` per read, requests and responses (chunked framing included) left as they
are. No HTTP parsing at all (one upstream connection per client needs no message
boundaries), no auth, no billing, no ASGI server: with ``python -m bench --floor`` it
runs as an arm pinned to the gateway's core, so the gateway's figures can be read
against what trio and the kernel cost on their own.

Not a product: it serves only what the bench sends.
"""

from __future__ import annotations

import argparse
import socket
import sys
from functools import partial
from urllib.parse import urlsplit

import trio

from proxy import netio  # the gateway's own raw reads and sends


async def _pipe(source: socket.socket, destination: socket.socket, receive_buffer: memoryview,
                both: trio.CancelScope) -> None:
    """Bytes from ``source`` to ``destination`` until either side closes or breaks;
    then ``both`` directions end."""
    try:
        while data := await netio.receive(source, receive_buffer):
            await netio.send_all(destination, data)
    except netio.SOCKET_ERRORS:
        pass  # a reset connection ends the relay like a closed one
    finally:
        both.cancel()


async def _connection(upstream_address: tuple[str, int], receive_buffer: memoryview,
                      stream: trio.SocketStream) -> None:
    try:
        upstream_stream = await trio.open_tcp_stream(*upstream_address)
    except OSError:
        await stream.aclose()
        return
    client, upstream = netio.raw_socket(stream), netio.raw_socket(upstream_stream)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pipe, client, upstream, receive_buffer, nursery.cancel_scope)
            nursery.start_soon(_pipe, upstream, client, receive_buffer, nursery.cancel_scope)
    finally:
        await upstream_stream.aclose()
        await stream.aclose()


async def serve_floor(host: str, port: int, upstream_url: str, *,
                      task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    parts = urlsplit(upstream_url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=4096)
    task_status.started(listeners[0].socket.getsockname()[1])
    receive_buffer = netio.receive_buffer()  # every read's, copied out before any await
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
