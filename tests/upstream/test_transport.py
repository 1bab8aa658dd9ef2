"""The lean upstream transport: bodies of every framing read through it (chunked at
every split of golden bodies), heads, connection reuse and discard. The parsing itself
is protocol.http1's, tested on its own in tests/protocol/test_http1.py."""

import httpx
import pytest
import trio

from proxy.protocol.http1 import ResponseReader
from proxy.upstream.transport import TrioHTTP11Transport, _Body, _Connection
from tests.splits import every_split, golden


class FakeStream:
    """A byte stream that hands out pre-cut pieces, then end-of-file."""

    def __init__(self, pieces):
        self.pieces = list(pieces)
        self.closed = False
        self.sent = b""

    async def receive_some(self, max_bytes=None):
        await trio.lowlevel.checkpoint()
        return self.pieces.pop(0) if self.pieces else b""

    async def send_all(self, data):
        self.sent += data

    async def aclose(self):
        self.closed = True


def chunked(payloads, trailers=b"", extension=b""):
    out = b""
    for p in payloads:
        out += b"%x%s\r\n%s\r\n" % (len(p), extension, p)
    return out + b"0\r\n" + trailers + b"\r\n"


HEADS = {"chunked": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
         "length": b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n",
         "close": b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n"}


async def body_of(pieces, framing="chunked", length=-1):
    """A body as the transport hands it out once a head with this framing was read."""
    transport = TrioHTTP11Transport()
    connection = _Connection((b"http", "x", 80), FakeStream(pieces))
    await transport._limit.acquire_on_behalf_of(connection)
    reader = ResponseReader(b"POST")
    reader.feed(HEADS[framing] % length if framing == "length" else HEADS[framing])
    await transport._read_head(connection, reader)
    return _Body(transport, connection, reader), connection, transport


async def decode(pieces, framing="chunked", length=-1):
    body, connection, transport = await body_of(pieces, framing, length)
    out = [part async for part in body]
    return b"".join(out), body, connection, transport


SSE = golden("thinking_text_tool.sse")
EVENTS = [e + b"\n\n" for e in SSE.split(b"\n\n") if e]
NEXT = b"HTTP/1.1 200 OK\r\n"


@pytest.mark.parametrize("name,wire,payload", [
    ("one chunk per event", chunked(EVENTS) + NEXT, SSE),
    ("events split across chunks", chunked([SSE[:100], SSE[100:101], SSE[101:]]) + NEXT, SSE),
    ("chunk extensions and trailers", chunked([b"abc", b"de"], b"X-Trailer: 1\r\n", b";ext=1") + NEXT, b"abcde"),
    ("empty body", b"0\r\n\r\n" + NEXT, b""),
])
async def test_chunked_every_split(name, wire, payload):
    step = 1 if len(wire) < 400 else 7  # every split for short bodies; every 7th byte for long ones
    cases = [[wire]] + [[wire[:i], wire[i:]] for i in range(1, len(wire), step)] + [[bytes([b]) for b in wire]]
    for pieces in cases:
        out, body, connection, transport = await decode(pieces)
        assert out == payload, [len(p) for p in pieces]
        leftover = connection.buffer + b"".join(connection.stream.pieces)
        assert leftover == NEXT and body.done
        await body.aclose()
        assert transport._idle[(b"http", "x", 80)] == [connection]  # read to the end: reused


async def test_every_split_of_a_golden_stream_yields_complete_payload_order():
    wire = chunked(EVENTS)
    for pieces in every_split(wire):
        out, body, _, _ = await decode(pieces)
        assert out == SSE


async def test_bad_chunk_size_is_a_protocol_error():
    with pytest.raises(httpx.RemoteProtocolError):
        await decode([b"zz\r\nabc\r\n0\r\n\r\n"])


async def test_cut_chunked_body_raises_and_connection_is_discarded():
    with pytest.raises(httpx.RemoteProtocolError):
        await decode([chunked(EVENTS)[:300]])


async def test_length_framing_and_leftover():
    out, body, connection, _ = await decode([b"hello", b" world", NEXT], "length", 11)
    assert out == b"hello world" and body.done and connection.buffer + b"".join(connection.stream.pieces) == NEXT
    out, body, connection, _ = await decode([b"hello world" + NEXT], "length", 11)
    assert out == b"hello world" and connection.buffer == NEXT


async def test_close_framing_reads_to_eof():
    out, body, connection, transport = await decode([b"a", b"b", b"c"], "close")
    assert out == b"abc" and body.done
    connection.reusable = False
    await body.aclose()
    assert connection.stream.closed and not transport._idle


async def test_every_read_yields_what_it_completed_as_one_bytes_object():
    """The hot path's contract: one read, at most one payload object (SSE events whole
    when the server sent one per chunk), and a chunk cut by a read as far as it came."""
    wire = chunked(EVENTS)
    pieces = [wire[:150], wire[150:151], wire[151:900], wire[900:]]
    body, _, _ = await body_of(pieces)
    payloads = [part async for part in body]
    assert len(payloads) == 4 and all(type(p) is bytes for p in payloads)
    assert b"".join(payloads) == SSE


async def test_abandoned_body_closes_its_connection():
    body, connection, transport = await body_of([chunked([b"abc"]) + NEXT])
    await body.aclose()  # never read: the connection cannot be reused
    assert connection.stream.closed and not transport._idle
    assert transport._limit.borrowed_tokens == 0


@pytest.mark.parametrize("head,status,framing,reusable", [
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", 200, "chunked", True),
    (b"HTTP/1.1 429 Too Many\r\ncontent-length: 2\r\nretry-after: 3\r\n\r\n", 429, "length", True),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n", 200, "length", False),
    (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n", 200, "length", False),
    (b"HTTP/1.1 200 OK\r\n\r\n", 200, "close", False),
    (b"HTTP/1.1 204 No Content\r\n\r\n", 204, "length", True),
])
async def test_head_parsing(head, status, framing, reusable):
    transport = TrioHTTP11Transport()
    connection = _Connection((b"http", "x", 80), FakeStream([head[:10], head[10:] + b"ok"]))
    reader = ResponseReader(b"POST")
    got = await transport._read_head(connection, reader)
    assert (got.status, got.framing, connection.reusable) == (status, framing, reusable)
    assert reader.unread() in (b"ok", b"")


async def test_head_after_bytes_kept_from_the_last_response():
    transport = TrioHTTP11Transport()
    connection = _Connection((b"http", "x", 80), FakeStream([b"-length: 0\r\n\r\n"]))
    connection.buffer = b"HTTP/1.1 204 No Content\r\ncontent"
    head = await transport._read_head(connection, ResponseReader(b"GET"))
    assert head.status == 204 and connection.buffer == b""


@pytest.mark.parametrize("pieces", [[b"SMTP ready\r\n\r\n"], [b"HTTP/1.1 200 OK\r\ncontent-len"], [b"x" * 70000]])
async def test_malformed_cut_or_oversized_head(pieces):
    transport = TrioHTTP11Transport()
    with pytest.raises(httpx.RemoteProtocolError):
        await transport._read_head(_Connection((b"http", "x", 80), FakeStream(pieces)), ResponseReader(b"GET"))
