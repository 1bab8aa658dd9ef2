"""The real Redis (127.0.0.1:6379, or CHEAPLM_TEST_REDIS_URL) for the tests of the
fleet's shared state: each test gets a prefix of its own, and its keys are deleted
afterwards (never FLUSHDB: other users share this Redis). Import the fixtures into a
test module to use them."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import AsyncIterator
from uuid import uuid4

import pytest
import trio

from proxy.limits.local import LocalLimits
from proxy.shared.client import SharedRedis, open_shared
from proxy.shared.limits import RedisLimits

REDIS_URL = os.environ.get("CHEAPLM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def delete_prefixed(shared: SharedRedis) -> None:
    keys = [key async for key in shared.client.scan_iter(match=shared.prefix + "*")]
    if keys:
        await shared.client.delete(keys)


@asynccontextmanager
async def node(prefix: str) -> AsyncIterator[SharedRedis]:
    """One process's connection (its own pool) to the fleet of ``prefix``."""
    async with open_shared(REDIS_URL, prefix, 2.0) as shared:
        yield shared


@pytest.fixture
def redis_prefix() -> str:
    return f"test:{uuid4().hex}:"


@pytest.fixture
async def shared_redis(redis_prefix) -> AsyncIterator[SharedRedis]:
    async with node(redis_prefix) as shared:
        try:
            yield shared
        finally:
            with trio.CancelScope(shield=True):
                await delete_prefixed(shared)


@pytest.fixture
async def second_node(shared_redis) -> AsyncIterator[SharedRedis]:
    """Another process of the same fleet (same prefix, another connection)."""
    async with node(shared_redis.prefix) as shared:
        yield shared


def redis_limits(shared: SharedRedis) -> RedisLimits:
    return RedisLimits(shared, LocalLimits(trio.current_time))
