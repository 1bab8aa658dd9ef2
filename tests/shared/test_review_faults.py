"""Faults found in review of the scale-out work (issue #19), each pinned by a test that
failed before its fix (a slow or cut Redis, a resent command, a late commit on PostgreSQL,
a lookup overlapped by a forget, a password in the URL's query). Redis through the real server (a prefix of its own per test); the slow Redis is
tests/shared/faulty.py's relay in front of it."""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest
import trio

from proxy import errors
from proxy.limits.keys import Admission
from proxy.limits.local import LocalLimits
from proxy.shared.changes import follow_changes
from proxy.shared.client import open_shared
from proxy.shared.limits import RedisLimits
from storage import open_store
from storage.base import KeyLimits

from tests.conftest import raw_ledger
from tests.shared.faulty import faulty_relay
from tests.shared.redis import redis_prefix, second_node, shared_redis  # noqa: F401


async def test_an_admission_redis_answered_too_late_does_not_keep_a_slot(shared_redis):
    limits = KeyLimits(concurrency=1)
    async with _behind_relay(shared_redis.prefix, 0.3) as (relay, slow, one):
        relay.delay = 0.6  # the script runs in Redis; its answer arrives after the timeout
        admission = await one.admit(1, limits, 0)
        assert isinstance(admission, Admission)  # answered in the process
        await admission.finish(0)                # ... and over: nothing runs any more
        relay.delay = 0
        await trio.sleep(0.5)
        assert await slow.ping()
        await _missed_ones_run(one)
    await _slot_is_free(shared_redis, limits)


async def test_an_admission_cancelled_on_the_wire_does_not_keep_a_slot(shared_redis):
    limits = KeyLimits(concurrency=1)
    async with _behind_relay(shared_redis.prefix, 2.0) as (relay, slow, one):
        relay.delay = 0.6
        with trio.move_on_after(0.2):  # the client disconnects meanwhile
            await one.admit(1, limits, 0)
            pytest.fail("not cancelled")
        relay.delay = 0
        await _missed_ones_run(one)
    await _slot_is_free(shared_redis, limits)


async def test_a_throttle_gives_back_its_own_take_not_another_nodes(shared_redis, second_node):
    one = RedisLimits(shared_redis, LocalLimits(trio.current_time)).throttle("login_ip", 5, 60.0)
    two = RedisLimits(second_node, LocalLimits(trio.current_time)).throttle("login_ip", 5, 60.0)
    assert await one.take("ip") == 0.0
    await trio.sleep(0.05)
    assert await two.take("ip") == 0.0
    await one.give_back("ip")  # the first take did not count
    left = await shared_redis.client.zrange(one._key("ip"), 0, -1)
    assert len(left) == 1
    assert left[0].decode().startswith(two.shared.node + ":"), "the other node's take was given back"


async def test_a_follower_started_while_a_change_is_in_flight_still_applies_it(pg_url):
    store = await open_store(pg_url, instance_id="inst-a")
    try:
        await store.create_user("u")  # (the schema exists now)
        raw = raw_ledger(pg_url)
        raw.autocommit = False
        try:
            # an operation in flight: its notice has its id, not committed yet
            raw.execute("INSERT INTO changes (kind, name, at) VALUES ('key', 'sk-cl-inflight', 1e9)")
            await store.set_channel_enabled("primary", False, "maintenance")  # a later id, committed

            class Keys:
                forgotten: list[str] = []

                def forget(self, prefix: str) -> None:
                    self.forgotten.append(prefix)

                def forget_account(self, account_id: int) -> None:
                    pass

                def clear(self) -> None:
                    self.forgotten.append("*")

            keys = Keys()
            async with trio.open_nursery() as nursery:
                await nursery.start(follow_changes, store, keys, lambda: None, 0.05)
                raw.commit()  # the revoke commits just after the gateway started following
                await trio.sleep(0.5)
                nursery.cancel_scope.cancel()
            assert "sk-cl-inflight" in keys.forgotten or "*" in keys.forgotten
        finally:
            raw.close()
    finally:
        await store.aclose()


def test_a_password_given_in_the_urls_query_is_redacted_too():
    from proxy.shared.client import redacted

    url = "redis://10.0.0.5:6379/0?password=hunter2"
    assert coredis_password(url) == "hunter2"  # (coredis does log in with it)
    assert "hunter2" not in redacted(url)


def coredis_password(url: str) -> str | None:
    import coredis

    return coredis.Redis.from_url(url).connection_pool.connection_kwargs.get("password")


async def _slot_is_free(shared_redis, limits: KeyLimits) -> None:
    """Another node admits key 1 (nothing of it runs any more)."""
    other = RedisLimits(shared_redis, LocalLimits(trio.current_time)).key_limiter()
    try:
        again = await other.admit(1, limits, 0)
    except errors.GatewayError as refused:
        pytest.fail(f"refused: {refused} (an admission that no longer runs still holds its slot in Redis)")
    await again.finish(0)


async def test_a_lookup_in_flight_when_its_key_is_forgotten_is_not_cached():
    from dataclasses import replace

    from proxy.auth import KeyCache
    from tests.shared.test_changes import record

    prefix, revoked = "sk-cl-aaaaaaaa", False
    read, answer = trio.Event(), trio.Event()

    async def lookup(prefix: str):
        before = record(prefix, 1) if not revoked else replace(record(prefix, 1), revoked_at=1.0)
        read.set()
        await answer.wait()  # (a slow store: its answer was read before the revoke committed)
        return before

    cache = KeyCache(lookup, 3600, trio.current_time)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cache.authenticate, prefix + "x" * 32)
        await read.wait()
        revoked = True
        cache.forget(prefix)  # the follower applies the revoke's notice
        answer.set()
    with pytest.raises(errors.GatewayError, match="revoked"):
        await cache.authenticate(prefix + "x" * 32)


async def _cut_mid_command(relay, call):
    """``call()`` while the connection under it drops (its answer held back, then the
    connection cut: a Redis restart or failover, a proxy's idle cut)."""
    relay.delay = 0.5

    async def cut() -> None:
        await trio.sleep(0.2)
        await relay.cut()
        relay.delay = 0

    async with trio.open_nursery() as nursery:
        nursery.start_soon(cut)
        return await call()


RESENT = ("shared/client.py: coredis.Redis.from_url's default retry_policy resends a command whose connection "
          "dropped (ConnectionError/TimeoutError, 2 retries); ADMIT (and THROTTLE_TAKE, BUCKET_TAKE, BACKOFF_TAKE) "
          "are not idempotent, so Redis runs it twice: ")


async def test_an_admit_resent_after_a_dropped_connection_is_not_refused_by_itself(shared_redis):
    async with _behind_relay(shared_redis.prefix, 3.0) as (relay, node, limiter):
        try:
            admission = await _cut_mid_command(relay, lambda: limiter.admit(1, KeyLimits(concurrency=1), 0))
        except BaseExceptionGroup as group:
            pytest.fail(f"refused: {group.exceptions[0]}")
        await admission.finish(0)


async def test_an_admit_resent_after_a_dropped_connection_reserves_its_tokens_once(shared_redis):
    limits = KeyLimits(tpm=1000)
    async with _behind_relay(shared_redis.prefix, 3.0) as (relay, node, limiter):
        admission = await _cut_mid_command(relay, lambda: limiter.admit(1, limits, 100))
        await admission.cancel()  # it never reached the upstream: it counts for nothing
        with trio.fail_after(5):  # Redis answers again (the watcher's ping): what it missed is undone
            while not node.up:
                await trio.sleep(0.05)
        await limiter.settle()
    assert int(await shared_redis.client.hget(limiter.keys(1)[2], "sum") or 0) == 0


@asynccontextmanager
async def _behind_relay(prefix: str, timeout: float):
    """A node of the fleet ``prefix`` whose Redis is behind the faulty relay: (the relay,
    its connection, its key limiter), with the node's background work (``keep``) running."""
    async with faulty_relay() as relay:
        async with open_shared(relay.url, prefix, timeout) as node, trio.open_nursery() as nursery:
            limits = RedisLimits(node, LocalLimits(trio.current_time))
            limiter = limits.key_limiter()
            nursery.start_soon(limits.keep)
            yield relay, node, limiter
            nursery.cancel_scope.cancel()


async def _missed_ones_run(limiter) -> None:
    """Until the node has run what Redis missed (it does within a second of Redis answering)."""
    with trio.fail_after(5):
        while limiter.pending:
            await trio.sleep(0.05)


async def test_notices_above_a_full_batch_behind_a_gap_are_read_within_a_second(nursery, autojump_clock):
    from proxy.shared.changes import BATCH
    from tests.shared.test_changes import FlakyFeed, notice

    feed = FlakyFeed()
    forgotten: list[str] = []

    class Keys:
        def forget(self, prefix: str) -> None:
            forgotten.append(prefix)

        def forget_account(self, account_id: int) -> None:
            pass

        def clear(self) -> None:
            forgotten.append("*")

    await nursery.start(follow_changes, feed, Keys(), lambda: None, 0.25)
    # id 1 is in flight (or rolled back); BATCH notices after it are committed
    feed.notices += [notice(i, "key", f"sk-cl-{i:08d}") for i in range(2, BATCH + 2)]
    await trio.sleep(0.5)
    feed.notices.append(notice(BATCH + 2, "key", "sk-cl-revoked"))
    await trio.sleep(1.0)
    assert "sk-cl-revoked" in forgotten or "*" in forgotten
