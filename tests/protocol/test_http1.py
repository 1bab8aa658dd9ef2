"""protocol.http1: response heads and bodies read through h11 at every split of golden
responses (several chunks, chunk extensions, trailers, bytes after the end), framing
and keep-alive decisions, errors; and the chunk frame we write, byte for byte h11's."""

from __future__ import annotations

import h11
import pytest

from proxy.protocol.http1 import ProtocolError, ResponseReader, chunk_frame, request_head
from tests.splits import every_split, golden

SSE = golden("thinking_text_tool.sse")
EVENTS = [e + b"\n\n" for e in SSE.split(b"\n\n") if e]
NEXT = b"HTTP/1.1 200 OK\r\n"  # the next response on the connection: never part of this one
CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunked(payloads, trailers=b"", extension=b""):
    return b"".join(b"%x%s\r\n%s\r\n" % (len(p), extension, p) for p in payloads) + b"0\r\n" + trailers + b"\r\n"


def read(pieces, method=b"POST"):
    """Feed ``pieces`` one by one as reads; the head, the payloads per read, and what
    is left unread once the body is done."""
    reader = ResponseReader(method)
    head, payloads = None, []
    for piece in pieces:
        reader.feed(piece)
        if head is None:
            head = reader.read_head()
            if head is None:
                continue
        data, done = reader.read_payload()
        assert type(data) is bytes
        payloads.append(data)
        if done:
            return head, payloads, reader.unread()
    raise AssertionError("the body never ended")


GOLDEN_RESPONSES = [
    ("one chunk per event", CHUNKED + chunked(EVENTS), SSE),
    ("events cut across chunks", CHUNKED + chunked([SSE[:100], SSE[100:101], SSE[101:]]), SSE),
    ("extensions and trailers", CHUNKED + chunked([b"abc", b"de"], b"X-Trailer: 1\r\nX-Two: 2\r\n", b";ext=1;q=\"a\""),
     b"abcde"),
    ("empty chunked body", CHUNKED + b"0\r\n\r\n", b""),
    ("hex sizes in upper case", CHUNKED + b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    ("content-length", b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", b"hello world"),
]


@pytest.mark.parametrize("name,wire,payload", GOLDEN_RESPONSES, ids=[g[0] for g in GOLDEN_RESPONSES])
def test_every_split_reads_the_same_response_and_leaves_the_next(name, wire, payload):
    wire += NEXT
    step = 1 if len(wire) < 600 else 5  # every split of short responses, every 5th byte of the long one
    cases = [[wire], [bytes([b]) for b in wire]] + [[wire[:i], wire[i:]] for i in range(1, len(wire), step)]
    for pieces in cases:
        head, payloads, unread = read(pieces)
        assert head.status == 200 and head.keep_alive
        assert b"".join(payloads) == payload, [len(p) for p in pieces]
        assert unread == NEXT[:len(unread)] and NEXT.startswith(unread)  # what came after the body stays


def test_every_split_and_random_multi_splits_of_a_golden_stream():
    wire = CHUNKED + chunked(EVENTS)
    for pieces in every_split(wire):
        _, payloads, unread = read(pieces)
        assert b"".join(payloads) == SSE and unread == b""


def test_one_read_yields_all_it_completed_and_a_cut_chunk_as_far_as_it_came():
    reader = ResponseReader(b"POST")
    reader.feed(CHUNKED + chunk_frame(b"first") + chunk_frame(b"second") + b"7\r\nthi")
    assert reader.read_head().framing == "chunked"
    assert reader.read_payload() == (b"firstsecondthi", False)
    assert reader.read_payload() == (b"", False)
    reader.feed(b"rd!!\r\n0\r\n\r\n")
    assert reader.read_payload() == (b"rd!!", True)


@pytest.mark.parametrize("body", [b"zz\r\nabc\r\n0\r\n\r\n", b"-1\r\nabc\r\n0\r\n\r\n", b"3\r\nabcXY0\r\n\r\n",
                                  b"3 3\r\nabc\r\n0\r\n\r\n"])
def test_bad_chunk_framing_is_a_protocol_error(body):
    reader = ResponseReader()
    reader.feed(CHUNKED + body)
    assert reader.read_head() is not None
    with pytest.raises(ProtocolError):
        reader.read_payload()


def test_a_bad_chunk_size_is_an_error_at_every_split():
    wire = CHUNKED + chunk_frame(b"abc") + b"zz\r\nabc\r\n0\r\n\r\n"
    for pieces in [[wire]] + [[wire[:i], wire[i:]] for i in range(1, len(wire))]:
        reader, head, payload = ResponseReader(), None, b""
        with pytest.raises(ProtocolError, match="chunk"):
            for piece in pieces:
                reader.feed(piece)
                head = head or reader.read_head()
                if head:
                    payload += reader.read_payload()[0]
        # What came in earlier reads was delivered; the read holding the bad size raises.
        assert b"abc".startswith(payload)


@pytest.mark.parametrize("cut", [len(CHUNKED) + 2, len(CHUNKED) + 10, len(CHUNKED) + 40])
def test_the_peer_closing_mid_body_is_a_protocol_error(cut):
    reader = ResponseReader()
    reader.feed((CHUNKED + chunked(EVENTS))[:cut])
    assert reader.read_head() is not None
    reader.read_payload()
    reader.feed(b"")
    with pytest.raises(ProtocolError):
        reader.read_payload()


def test_a_body_read_until_close():
    head, payloads, unread = read([b"HTTP/1.1 200 OK\r\n\r\nab", b"c", b""])
    assert (head.framing, head.length, head.keep_alive) == ("close", -1, True)
    assert b"".join(payloads) == b"abc" and unread == b""


@pytest.mark.parametrize("wire,method,status,framing,length,keep_alive", [
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", b"POST", 200, "chunked", -1, True),
    (b"HTTP/1.1 429 Too Many\r\ncontent-length: 2\r\nretry-after: 3\r\n\r\n", b"POST", 429, "length", 2, True),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n", b"POST", 200, "length", 2, False),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nConnection: Upgrade, CLOSE\r\n\r\n", b"POST", 200, "length", 2, False),
    (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n", b"POST", 200, "length", 2, False),
    (b"HTTP/1.1 200 OK\r\n\r\n", b"POST", 200, "close", -1, True),
    (b"HTTP/1.1 204 No Content\r\n\r\n", b"POST", 204, "length", 0, True),
    (b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n", b"GET", 304, "length", 0, True),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", b"HEAD", 200, "length", 0, True),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n", b"POST", 201, "length", 0, True),
])
def test_head_framing_and_keep_alive(wire, method, status, framing, length, keep_alive):
    reader = ResponseReader(method)
    reader.feed(wire)
    head = reader.read_head()
    assert (head.status, head.framing, head.length, head.keep_alive) == (status, framing, length, keep_alive)


def test_head_keeps_header_names_as_sent_and_strips_values():
    reader = ResponseReader()
    reader.feed(b"HTTP/1.1 200 OK\r\nRequest-Id:  req_1 \r\nx-a:b\r\ncontent-length: 0\r\n\r\n")
    head = reader.read_head()
    assert head.headers == [(b"Request-Id", b"req_1"), (b"x-a", b"b"), (b"content-length", b"0")]
    assert reader.read_payload() == (b"", True)


@pytest.mark.parametrize("wire", [
    b"SMTP ready\r\n\r\n",
    b"HTTP/1.1 2OO OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
])
def test_malformed_heads_are_protocol_errors(wire):
    reader = ResponseReader()
    reader.feed(wire)
    with pytest.raises(ProtocolError):
        reader.read_head()


def test_a_head_cut_by_close_or_too_large_is_a_protocol_error():
    reader = ResponseReader()
    reader.feed(b"HTTP/1.1 200 OK\r\ncontent-le")
    assert reader.read_head() is None
    reader.feed(b"")
    with pytest.raises(ProtocolError):
        reader.read_head()
    reader = ResponseReader(max_head=1000)
    reader.feed(b"HTTP/1.1 200 OK\r\n" + b"x-filler: y\r\n" * 100)
    with pytest.raises(ProtocolError):
        reader.read_head()


def h11_chunk(data: bytes) -> bytes:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    conn.next_event()
    conn.send(h11.Response(status_code=200, headers=[]))
    return conn.send(h11.Data(data=data))


@pytest.mark.parametrize("size", [1, 9, 15, 16, 255, 256, 4096, 65537])
def test_chunk_frame_is_what_h11_writes(size):
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert chunk_frame(data) == h11_chunk(data)
    _, payloads, _ = read([CHUNKED + chunk_frame(data) + b"0\r\n\r\n"])
    assert b"".join(payloads) == data


def test_request_head_is_framed_by_content_length_alone():
    head = request_head(b"POST", b"/v1/messages?beta=true", [(b"Host", b"x:1"), (b"X-Api-Key", b"k"),
                                                             (b"Transfer-Encoding", b"chunked"),
                                                             (b"content-length", b"99")], 5)
    server = h11.Connection(h11.SERVER)
    server.receive_data(head + b"hello")
    request, data, end = server.next_event(), server.next_event(), server.next_event()
    assert (request.method, request.target) == (b"POST", b"/v1/messages?beta=true")
    assert list(request.headers.raw_items()) == [(b"Host", b"x:1"), (b"X-Api-Key", b"k"), (b"Content-Length", b"5")]
    assert data.data == b"hello" and type(end) is h11.EndOfMessage
