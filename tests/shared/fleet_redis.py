"""The real Redis (127.0.0.1:6379, as on CI) for a test: a prefix of its own, every key
under it deleted afterwards (never FLUSHDB: other runs share this Redis)."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from typing import AsyncIterator

import coredis
import pytest

from proxy.shared.client import SharedRedis

REDIS_URL = "redis://127.0.0.1:6379/0"


def new_prefix() -> str:
    return f"test:{uuid.uuid4().hex}:"


async def delete_prefix(prefix: str) -> list[bytes]:
    """Delete every key under ``prefix``: the keys that were there."""
    client = coredis.Redis.from_url(REDIS_URL, decode_responses=False)
    async with client:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(keys)
    return keys


@asynccontextmanager
async def shared_redis(prefix: str | None = None, timeout: float = 0.5,
                       url: str = REDIS_URL) -> AsyncIterator[SharedRedis]:
    """A ``SharedRedis`` (open) under a fresh prefix, cleaned up after; skips the test when
    Redis cannot be reached at the default URL."""
    shared = SharedRedis(url, prefix or new_prefix(), timeout)
    async with shared.client:
        if url == REDIS_URL and not await shared.ping():
            pytest.skip(f"Redis is unreachable at {REDIS_URL}")
        try:
            yield shared
        finally:
            if url == REDIS_URL:
                await delete_prefix(shared.prefix)
