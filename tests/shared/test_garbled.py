"""A "Redis" that answers what no Redis would (redis_url pointing at another service, a
broken proxy between the nodes and Redis): every user of the connection falls back to
the process's own state and marks Redis down, as for one that does not answer; none of
them raises (the channel sync and the watcher run in the gateway's own nursery: their
exception was the whole gateway's end)."""

from __future__ import annotations

import logging
from uuid import uuid4

import pytest
import trio

from proxy.limits.local import LocalLimits
from proxy.protocol.thinking import Placeholder, Turn
from proxy.shared.channels import SharedHealth
from proxy.shared.client import open_shared, redacted
from proxy.shared.limits import RedisLimits, Shared
from proxy.shared.thinking import SharedThinking
from proxy.upstream.router import Channel, Router, RoutingPolicy
from storage.base import KeyLimits

from tests.shared.redis import REDIS_URL, delete_prefixed
from tests.shared.test_channels import _Nowhere

ANSWERS = [b"%&garbage\r\n", b"HTTP/1.1 400 Bad Request\r\n\r\n", b"*2\r\n:x\r\n"]


class _Garbler:
    """A relay to the real Redis whose answers become ``answer`` once ``on`` (the
    connections are made, and their handshakes answered, by Redis)."""

    def __init__(self, answer: bytes) -> None:
        self.answer, self.on = answer, False

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._relay, listeners)

    async def _relay(self, client) -> None:
        host, port = REDIS_URL.split("//")[1].split("/")[0].split(":")
        async with client, await trio.open_tcp_stream(host, int(port)) as server, trio.open_nursery() as nursery:
            async def pipe(source, sink, garble: bool) -> None:
                async for data in source:
                    await sink.send_all(self.answer if garble and self.on else data)
                nursery.cancel_scope.cancel()
            nursery.start_soon(pipe, client, server, False)
            nursery.start_soon(pipe, server, client, True)


@pytest.mark.parametrize("answer", ANSWERS)
async def test_an_answer_no_redis_gives_is_redis_down(nursery, answer):
    garbler = _Garbler(answer)
    port = await nursery.start(garbler.serve)
    with trio.fail_after(20):
        async with open_shared(f"redis://127.0.0.1:{port}/0", f"test:{uuid4().hex}:", 0.5) as shared:
            assert await shared.ping()
            garbler.on = True
            limits = RedisLimits(shared, LocalLimits(trio.current_time))
            uses = [lambda: limits.throttle("t", 1, 60.0).take("k"),
                    lambda: limits.bucket("b", 60).take("k"),
                    lambda: limits.backoff("o", 1.0, 60.0).take("k"),
                    lambda: limits.memo("m", 60.0).has("k"),
                    lambda: limits.key_limiter().admit(1, KeyLimits(rpm=5, concurrency=2), 10),
                    lambda: SharedThinking(shared).remember(1, Turn((Placeholder("tool_use", "toolu_1"),))),
                    lambda: SharedThinking(shared).recall(1, ["toolu_1"]),
                    lambda: SharedHealth(Shared(shared), Router([Channel("a", _Nowhere())], RoutingPolicy())).round(),
                    shared.ping]
            for use in uses:
                shared.up = True  # (as after a ping that answered)
                await use()
                assert shared.up is False
            garbler.on = False
            with trio.fail_after(5):
                while not await shared.ping():  # (a connection the garbage broke is replaced)
                    await trio.sleep(0.1)
            await delete_prefixed(shared)  # (Redis ran the commands whose answers were garbled)


@pytest.mark.parametrize("url,shown", [
    ("redis://:secret@127.0.0.1:1/0", "redis://:***@127.0.0.1:1/0"),
    ("redis://me:secret@127.0.0.1:1/0", "redis://me:***@127.0.0.1:1/0"),
    ("redis://127.0.0.1:1/0?password=secret&db=2", "redis://127.0.0.1:1/0?***"),
    ("rediss://:secret@h:1/0?ssl_cert_reqs=none#secret", "rediss://:***@h:1/0?***"),
    ("unix://:secret@/run/redis.sock?db=1", "unix://:***@/run/redis.sock?***"),
    ("redis://:se?cr@et@h:1", "redis://:***@h:1"),
    ("redis://h:1", "redis://h:1"),
])
def test_the_url_shown_in_health_and_the_log_has_no_password(url, shown):
    """(/health is public: a password given as a query parameter, as coredis takes it, too.)"""
    assert redacted(url) == shown


async def test_while_redis_is_down_the_log_says_so_once_not_every_second(caplog):
    """(coredis logs each failed connection attempt and retry, an error and an info line
    at every ping: six lines a second per process, for as long as Redis is down.)"""
    caplog.set_level(logging.INFO)
    async with open_shared("redis://127.0.0.1:1/0", f"test:{uuid4().hex}:", 0.5) as shared:
        await trio.sleep(2.2)  # (two pings more)
        assert not shared.up
    assert [r.name for r in caplog.records] == ["cheaplm.shared"]
