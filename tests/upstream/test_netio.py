"""proxy.netio over real socket pairs: the raw socket only under a plain SocketStream,
reads into one shared buffer copied out, sends that wait only for what the socket
did not take, and errors as OSError."""

from __future__ import annotations

import socket
import ssl

import pytest
import trio
import trio.testing

from proxy import netio


def stream_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


async def test_raw_socket_only_under_a_plain_socket_stream():
    left, right = stream_pair()
    sock = netio.raw_socket(left)
    assert isinstance(sock, socket.socket) and sock.fileno() == left.socket.fileno()
    assert netio.raw_socket(None) is None
    assert netio.raw_socket(trio.testing.MemorySendStream()) is None
    assert netio.raw_socket(trio.SSLStream(left, ssl.create_default_context())) is None  # TLS: not raw bytes
    for s in (left, right):
        await s.aclose()


async def test_receive_copies_out_of_one_shared_buffer():
    left, right = stream_pair()
    buffer = netio.receive_buffer()
    sock = netio.raw_socket(right)
    await left.send_all(b"first")
    first = await netio.receive(sock, buffer)
    await left.send_all(b"2nd")
    second = await netio.receive(sock, buffer)
    assert (first, second) == (b"first", b"2nd") and type(first) is bytes  # copies: the buffer moved on
    await left.aclose()
    assert await netio.receive(sock, buffer) == b""  # end of file
    await right.aclose()


async def test_receive_waits_until_readable():
    left, right = stream_pair()
    got = []

    async def reader():
        got.append(await netio.receive(netio.raw_socket(right), netio.receive_buffer()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert not got
        await left.send_all(b"late")
    assert got == [b"late"]
    for s in (left, right):
        await s.aclose()


async def test_send_all_waits_for_a_full_window_and_delivers_everything():
    left, right = stream_pair()
    sock = netio.raw_socket(left)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    data = bytes(range(256)) * 8192  # 2 MiB: far more than the socket buffers hold
    first = netio.send_nowait(sock, data)
    assert 0 < first < len(data)  # a partial send, no exception
    assert netio.send_nowait(sock, data[first:]) == 0  # full: 0, not BlockingIOError
    received = bytearray()

    async def drain():
        while len(received) < len(data):
            received.extend(await right.receive_some(1 << 20))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        await netio.send_all(sock, data[first:])
    assert received == data
    for s in (left, right):
        await s.aclose()


async def test_send_to_a_closed_peer_is_an_oserror():
    left, right = stream_pair()
    await right.aclose()
    with pytest.raises(OSError):
        for _ in range(100):  # the first sends may still land in the buffer
            await netio.send_all(netio.raw_socket(left), b"x" * 65536)
    await left.aclose()
