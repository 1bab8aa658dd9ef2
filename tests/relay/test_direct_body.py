"""The direct body path: chunks written to the client's socket under hypercorn's trio
worker keep the connection reusable, survive a full receive window, and step aside
wherever they can't apply; and the gateway, served by the hypercorn it is pinned to,
takes the path for every streamed response (its frames are h11's: tests/protocol).

An upgrade of hypercorn that moves the internals ``direct_body.find`` walks turns the
path off without an error; ``test_the_gateway_under_hypercorns_trio_worker_takes_the_direct_path``
is what fails then."""

from __future__ import annotations

import importlib.metadata
from functools import partial

import h11
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from proxy.relay import direct_body
from proxy.relay.exchange import Exchange

BIG = 16 * 1024 * 1024  # more than loopback's socket buffers hold: the write must wait


def test_not_found_outside_hypercorn():
    async def send(message):
        pass

    scope = {"type": "http", "http_version": "1.1"}
    assert direct_body.find(send, scope) is None
    assert direct_body.find(print, scope) is None


async def streaming_app(scope, receive, send):
    """Streams the chunks the request's path asks for; the first chunk says which path
    the body takes ("direct" or "asgi")."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    while (await receive()).get("more_body"):
        pass
    ex = Exchange(scope, receive, send)
    await ex.start_stream([])
    await ex.write(b"direct" if ex._direct is not None else b"asgi")
    for part in scope["path"].strip("/").split("/"):
        size = int(part)
        await ex.write(bytes([65 + size % 26]) * size)
    await ex.write(b"")  # an empty write must not end the body
    await ex.end_stream(b"end")


@pytest.fixture
async def server(nursery):
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    binds = await nursery.start(partial(hypercorn_serve, streaming_app, config))
    host, port = binds[0].removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def exchange(stream: trio.SocketStream, conn: h11.Connection, path: str,
                   pause: float = 0.0) -> tuple[int, bytes]:
    await stream.send_all(conn.send(h11.Request(method="POST", target=path,
                                                headers=[("host", "x"), ("content-length", "0")])))
    await stream.send_all(conn.send(h11.EndOfMessage()))
    if pause:
        await trio.sleep(pause)  # let the server fill the window before we read
    status, body = 0, bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(1 << 20))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            return status, bytes(body)


def expected(path: str, how: str) -> bytes:
    parts = [bytes([65 + int(p) % 26]) * int(p) for p in path.strip("/").split("/")]
    return how.encode() + b"".join(parts) + b"end"


async def test_direct_chunks_and_keep_alive(server):
    stream = await trio.open_tcp_stream(*server)
    conn = h11.Connection(h11.CLIENT)
    for path in ("/5/300/1", "/70000/2"):  # two responses on one connection
        status, body = await exchange(stream, conn, path)
        assert status == 200 and body == expected(path, "direct")
        assert conn.our_state is h11.DONE and conn.their_state is h11.DONE
        conn.start_next_cycle()
    await stream.aclose()


async def test_full_window_waits_and_nothing_interleaves(server, monkeypatch):
    waited = []
    original = direct_body.DirectBody._send_rest

    async def counting(self, rest):
        waited.append(len(rest))
        await original(self, rest)

    monkeypatch.setattr(direct_body.DirectBody, "_send_rest", counting)
    stream = await trio.open_tcp_stream(*server)
    conn = h11.Connection(h11.CLIENT)
    path = f"/{BIG}/3/{BIG // 2}"
    status, body = await exchange(stream, conn, path, pause=0.3)
    assert status == 200 and body == expected(path, "direct")
    assert waited, "a 16 MiB chunk should not fit the socket at once"
    conn.start_next_cycle()
    status, body = await exchange(stream, conn, "/7")
    assert body == expected("/7", "direct")
    await stream.aclose()


async def test_http10_client_gets_the_asgi_path(server):
    """HTTP/1.0 has no chunked framing: hypercorn writes the body raw and closes."""
    stream = await trio.open_tcp_stream(*server)
    await stream.send_all(b"POST /5/6 HTTP/1.0\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
    received = bytearray()
    while data := await stream.receive_some(65536):
        received += data
    head, body = bytes(received).split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200")
    assert body == expected("/5/6", "asgi")
    await stream.aclose()


async def test_client_gone_midway_does_not_raise(server):
    """The client leaves while a big chunk is half written: the app finishes without an
    error of its own (hypercorn reports the disconnect), and the server keeps serving."""
    stream = await trio.open_tcp_stream(*server)
    conn = h11.Connection(h11.CLIENT)
    await stream.send_all(conn.send(h11.Request(method="POST", target=f"/{BIG}/{BIG}", headers=[
        ("host", "x"), ("content-length", "0")])))
    await stream.send_all(conn.send(h11.EndOfMessage()))
    await stream.receive_some(1000)
    await stream.aclose()
    await trio.sleep(0.2)
    fresh = await trio.open_tcp_stream(*server)
    status, body = await exchange(fresh, h11.Connection(h11.CLIENT), "/4")
    assert body == expected("/4", "direct")
    await fresh.aclose()


async def test_the_gateway_under_hypercorns_trio_worker_takes_the_direct_path(alice, monkeypatch):
    """The real gateway, served by ``proxy.serve`` (hypercorn's trio worker) on loopback:
    each streamed response, on both streaming endpoints, finds the direct path, and
    every body chunk takes it. A silent fall back to ASGI messages would cost about
    half the gateway's CPU per event; this fails instead (never judged by timing)."""
    found, writes = [], []
    original_init, original_write = direct_body.DirectBody.__init__, direct_body.DirectBody.write

    def recording_init(self, *args):  # only find() builds one: it found the path
        original_init(self, *args)
        found.append(self)

    async def recording_write(self, data):
        took = await original_write(self, data)
        writes.append((self, took))
        return took

    monkeypatch.setattr(direct_body.DirectBody, "__init__", recording_init)
    monkeypatch.setattr(direct_body.DirectBody, "write", recording_write)
    hint = f"hypercorn {importlib.metadata.version('hypercorn')}: direct_body.find no longer finds its way"
    client = alice.anthropic()
    async with client.messages.stream(model="claude-sonnet-4.5", max_tokens=50,
                                      messages=[{"role": "user", "content": "hi"}]) as stream:
        text = await stream.get_final_text()
    assert text
    assert len(found) == 1, hint
    chunks = [c async for c in await alice.openai().chat.completions.create(
        model="claude-sonnet-4.5", stream=True, messages=[{"role": "user", "content": "hi"}])]
    assert chunks
    assert len(found) == 2, hint
    for path in found:  # every chunk of both responses went to the socket directly
        took = [t for body, t in writes if body is path]
        assert took and all(took), f"the direct path stepped aside: {took}"
