"""Helpers for the router tests over real HTTP: simulators as channels behind a whole
gateway (the router, the operator's CLI and its channel listing)."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import trio

from proxy.config import ChannelConfig, RoutingConfig, UpstreamConfig
from proxy.serve import serve
from proxy.simulator.script import Knobs
from proxy.simulator.server import SimulatorState, serve_simulator
from tests.conftest import UPSTREAM_KEY, Sim, make_account

MODEL = "claude-haiku-4.5"


async def _simulator(nursery, **knobs) -> Sim:
    state = SimulatorState(api_key=UPSTREAM_KEY, knobs=Knobs(**knobs))
    url, state = await nursery.start(partial(serve_simulator, "127.0.0.1", 0, state=state))
    return Sim(url, state)


def _channel(name: str, url: str, key: str = UPSTREAM_KEY, **options) -> ChannelConfig:
    return ChannelConfig(name, UpstreamConfig(url=url, api_key=key, first_byte_timeout=5, idle_timeout=5), **options)


async def _gateway(nursery, config, channels, **routing):
    running = await nursery.start(serve, replace(config, upstream=UpstreamConfig(), channels=tuple(channels),
                                                 routing=RoutingConfig(**routing)))
    return running, await make_account(running)


def _ask(client, text: str = "hi", stream: bool = False, max_tokens: int = 20):
    kwargs = dict(model=MODEL, max_tokens=max_tokens, messages=[{"role": "user", "content": text}])
    if stream:
        return client.messages.create(stream=True, **kwargs)
    return client.messages.create(**kwargs)


async def _rows(running, n):
    with trio.fail_after(10):
        while len(rows := await running.gateway.store.usage("alice", 1000)) < n:
            await trio.sleep(0.01)
    return rows


async def raw_upstream(nursery, response: bytes) -> str:
    """A server answering every request with ``response`` (raw HTTP/1.1 bytes)."""
    async def serve_one(stream) -> None:
        async with stream:
            data = b""
            with trio.move_on_after(5):
                while b"\r\n\r\n" not in data:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    body += chunk
                await stream.send_all(response)

    listeners = await nursery.start(partial(trio.serve_tcp, serve_one, 0, host="127.0.0.1"))
    return f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"


ODD_STATUSES = [b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
                b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.invalid/\r\nContent-Length: 0\r\n"
                b"Connection: close\r\n\r\n"]
