"""Raw socket I/O under trio: the one module that reaches into trio's private socket.

The relay's hot paths (the upstream transport, the direct body path, the simulator's
paced events, and the bench's floor and load generator) each do one syscall per
event. trio's stream methods would add a checkpoint, a conflict detector and, on
reads, a try-first ``recv`` that fails with an exception on a paced stream almost
every time. So these paths talk to the stdlib socket under a ``trio.SocketStream``,
and this module is where that happens:

- ``raw_socket(stream)``: the stdlib socket of a plain ``trio.SocketStream``, else None;
- ``receive(sock, buffer)``: wait until readable, then one ``recv_into`` a shared
  buffer, copying out what arrived;
- ``send_nowait`` / ``send_rest`` / ``send_all``: send now, and wait until writable
  only for what the socket did not take;
- ``SOCKET_ERRORS``: what a failed socket operation raises, raw or through trio.
"""

from __future__ import annotations

import socket
from typing import Any

import trio

READ_SIZE = 65536

# A broken or reset connection: OSError from the stdlib socket, trio's own errors from
# the stream methods (and from a stream closed by another task).
SOCKET_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


def raw_socket(stream: Any) -> socket.socket | None:
    """The stdlib socket under ``stream`` when it is a plain ``trio.SocketStream`` (not
    TLS, not a subclass or a test double); None otherwise, and the caller keeps to
    trio's stream methods."""
    if type(stream) is not trio.SocketStream:
        return None
    sock = getattr(stream.socket, "_sock", None)  # trio's private attribute: read here only
    return sock if isinstance(sock, socket.socket) else None


def receive_buffer() -> memoryview:
    """A buffer for ``receive``. One per trio run serves every connection of it (see
    ``receive``); its owner keeps it, so no module holds mutable state."""
    return memoryview(bytearray(READ_SIZE))


async def receive(sock: socket.socket, buffer: memoryview) -> bytes:
    """Wait for ``sock`` (a non-blocking stdlib socket) to be readable, then one
    ``recv_into`` the shared ``buffer``, returning a copy of what arrived (b"" at EOF).

    Readable first: a paced stream is almost never readable when its reader arrives,
    so trio's try-recv-first would cost a failed syscall and an exception per event.
    Nothing awaits between the recv and the copy, so one buffer serves every
    connection of a trio process; ``recv(65536)`` would allocate 64 KiB and shrink it
    on every read, which costs CPU and, with many streams, fragments the heap (RSS per
    stream 105 -> 61 KiB, measured). OSError propagates."""
    while True:
        await trio.lowlevel.wait_readable(sock)
        try:
            return buffer[:sock.recv_into(buffer)].tobytes()
        except BlockingIOError:
            continue


def send_nowait(sock: socket.socket, data: bytes | memoryview) -> int:
    """One non-blocking send: how many bytes the socket took (0 when its buffer is
    full). OSError other than "would block" propagates: the connection is broken."""
    try:
        return sock.send(data)
    except BlockingIOError:
        return 0


async def send_rest(sock: socket.socket, rest: memoryview) -> None:
    """What the socket did not take: wait until it is writable and send, until all is
    gone. OSError propagates. Callers that share the connection with another writer
    hold that writer's lock around this (nothing may interleave with a cut frame)."""
    while rest:
        await trio.lowlevel.wait_writable(sock)
        rest = rest[send_nowait(sock, rest):]


async def send_all(sock: socket.socket, data: bytes) -> None:
    """Send now, and wait until writable only if the socket does not take it all. A
    send that fits costs one syscall and no checkpoint: on a paced stream the task has
    just woken, so trio's extra checkpoint would only cost a scheduler round trip."""
    sent = send_nowait(sock, data)
    if sent < len(data):
        await send_rest(sock, memoryview(data)[sent:])
