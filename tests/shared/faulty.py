"""A TCP relay in front of the real Redis that a test can make slow (every reply held
back ``delay`` seconds) or cut (every connection closed): what a Redis that is
overloaded, or restarted, looks like to a gateway. In-process, on trio."""

from __future__ import annotations

from contextlib import asynccontextmanager
from functools import partial
from typing import AsyncIterator
from urllib.parse import urlparse

import trio

from tests.shared.redis import REDIS_URL


class FaultyRelay:
    def __init__(self) -> None:
        self.delay = 0.0
        self.port = 0
        self._streams: list[trio.abc.Stream] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{urlparse(REDIS_URL).path.lstrip('/') or 0}"

    async def cut(self) -> None:
        """Close every connection relayed so far (as a Redis restart does)."""
        for stream in self._streams:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
        self._streams.clear()

    async def _pipe(self, source: trio.abc.Stream, sink: trio.abc.Stream, slow: bool) -> None:
        try:
            while data := await source.receive_some(65536):
                if slow and self.delay:
                    await trio.sleep(self.delay)
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(sink)

    async def _handle(self, client: trio.SocketStream) -> None:
        target = urlparse(REDIS_URL)
        upstream = await trio.open_tcp_stream(target.hostname or "127.0.0.1", target.port or 6379)
        self._streams += [client, upstream]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pipe, client, upstream, False)
            nursery.start_soon(self._pipe, upstream, client, True)


@asynccontextmanager
async def faulty_relay() -> AsyncIterator[FaultyRelay]:
    relay = FaultyRelay()
    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, relay._handle, 0, host="127.0.0.1"))
        relay.port = listener.socket.getsockname()[1]
        yield relay
        nursery.cancel_scope.cancel()
