"""The Redis connection one gateway process shares with its fleet: coredis (trio through
anyio, its own pool), the key prefix, and whether Redis is answering.

``up`` is False from the first command that fails or takes longer than the timeout
until a ping answers again (``watch`` pings every second while it is down); users of
the connection fall back to per-process state meanwhile, and ``/health`` says so."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable, TypeVar

import anyio
import coredis
from coredis.retry import NoRetryPolicy
import trio

log = logging.getLogger("cheaplm.shared")

RETRY_SECONDS = 1.0
T = TypeVar("T")

# What a Redis that is down, unreachable, slow or not Redis at all raises: coredis's
# errors, its transport's (anyio), the timeout, and its parser's ValueError for an answer
# no Redis gives (redis_url naming another service, a broken proxy on the way). Every
# user of the connection catches these, and only these, as "Redis is down".
FAILURES = (coredis.exceptions.RedisError, OSError, trio.TooSlowError, anyio.BrokenResourceError,
            anyio.ClosedResourceError, anyio.EndOfStream, ValueError)


class SharedRedis:
    def __init__(self, url: str, prefix: str = "cheaplm:", timeout: float = 0.5) -> None:
        self.url, self.prefix, self.timeout = url, prefix, timeout
        # No silent resend (coredis retries a command twice on a dropped connection by default):
        # a take must run once; a failure falls back, and the watcher's ping reconnects.
        self.client = coredis.Redis.from_url(url, connect_timeout=timeout, stream_timeout=timeout,
                                             decode_responses=False, retry_policy=NoRetryPolicy())
        self.up = True
        self.since = 0.0  # trio time of the last change of ``up``

    def key(self, *parts: object) -> str:
        """A key of this fleet: the prefix, then the parts joined by ':'."""
        return self.prefix + ":".join(str(p) for p in parts)

    def failed(self, exc: BaseException) -> None:
        """A command failed: Redis counts as down (logged once) until a ping answers."""
        if self.up:
            log.warning("redis at %s is not answering (%s): each process falls back to its own limits "
                        "until it is back", redacted(self.url), type(exc).__name__)
            self.up, self.since = False, trio.current_time()

    def answered(self) -> None:
        if not self.up:
            log.warning("redis at %s answers again: limits are shared across the fleet again", redacted(self.url))
            self.up, self.since = True, trio.current_time()

    async def run(self, command: Callable[[], Awaitable[T]]) -> T:
        """``command()`` within the timeout; a failure (one of FAILURES) marks Redis down
        and is raised for the caller to fall back."""
        try:
            with trio.fail_after(self.timeout):
                return await command()
        except FAILURES as exc:
            self.failed(exc)
            raise

    async def ping(self) -> bool:
        try:
            await self.run(self.client.ping)
        except FAILURES:
            return False
        self.answered()
        return True

    async def watch(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Ping once (so the log says at start whether Redis answers), then every second
        while it is down."""
        await self.ping()
        task_status.started()
        while True:
            await trio.sleep(RETRY_SECONDS)
            if not self.up:
                await self.ping()

    def describe(self) -> dict:
        """For /health: never the URL's password."""
        return {"url": redacted(self.url), "up": self.up}


def redacted(url: str) -> str:
    """The URL without its password (redis://:secret@host -> redis://:***@host), nor its
    query and fragment (coredis takes ``?password=`` too): ``?***``."""
    scheme, sep, rest = url.partition("://")
    shown_user = ""
    if "@" in rest:  # (the last '@': a password may hold one, or a '?')
        credentials, _, rest = rest.rpartition("@")
        shown_user = credentials.partition(":")[0] + ":***@"
    host, query, _ = rest.partition("?")
    return f"{scheme}{sep}{shown_user}{host.partition('#')[0]}" + ("?***" if query else "")


@asynccontextmanager
async def open_shared(url: str | None, prefix: str, timeout: float) -> AsyncIterator[SharedRedis | None]:
    """The connection for ``url`` (none without one), open while the block runs; its
    watcher runs in a nursery of its own."""
    if not url:
        yield None
        return
    # coredis logs every failed connection attempt and retry (six lines a second per process
    # while Redis is down); this module says when Redis goes and comes back, once each.
    logging.getLogger("coredis").setLevel(logging.CRITICAL)
    shared = SharedRedis(url, prefix, timeout)
    async with shared.client:
        async with trio.open_nursery() as nursery:
            await nursery.start(shared.watch)
            yield shared
            nursery.cancel_scope.cancel()
