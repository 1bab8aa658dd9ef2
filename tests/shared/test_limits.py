"""proxy/shared/limits.py: the limiters shared through the real Redis, exact across
processes (two connections of one prefix are two nodes), and answered in the process
while Redis does not answer.

The throttle, bucket, backoff and memo tests that take ``limits`` run on the in-process
limiters too (same semantics); their clock-driven tests (windows ending, delays doubling)
are in tests/accounts and tests/http, in-process on a hand clock: Redis's clock cannot
be turned by a test."""

from __future__ import annotations

import logging

import pytest
import trio

from proxy import errors
from proxy.limits.keys import Admission
from proxy.limits.local import LocalLimits
from proxy.shared import limits as shared_limits
from proxy.shared.client import open_shared
from proxy.shared.limits import RedisAdmission
from storage.base import KeyLimits

from tests.conftest import at_once
from tests.fakes import HandClock
from tests.shared.redis import delete_prefixed, redis_limits, redis_prefix, second_node, shared_redis  # noqa: F401


@pytest.fixture(params=["local", "redis"])
def limits(request, shared_redis):
    return LocalLimits(HandClock()) if request.param == "local" else redis_limits(shared_redis)


@pytest.fixture
def nodes(shared_redis, second_node):
    """The limits of two processes of one fleet."""
    return redis_limits(shared_redis), redis_limits(second_node)


async def _admitted(limiter, key, limits: KeyLimits, tokens: int = 0):
    try:
        return await limiter.admit(key, limits, tokens)
    except errors.GatewayError as refused:
        assert refused.status == 429
        return None


async def _across(n: int, pair, call) -> list:
    """``call(x)`` ``n`` times at once, ``x`` in turn one node's then the other's."""
    turn = iter(range(n))
    return await at_once(n, lambda: call(pair[next(turn) % 2]))


def _remaining(admission, kind: str) -> int:
    return int(dict(admission.headers)[f"anthropic-ratelimit-{kind}-remaining".encode()])


# -- the same semantics as in the process ------------------------------------------------------

async def test_a_throttle_takes_its_limit_gives_back_and_clears(limits):
    throttle = limits.throttle("login_ip", 3, 60.0)
    assert [await throttle.take("ip") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert 59 < await throttle.take("ip") <= 60 and await throttle.take("other") == 0
    await throttle.give_back("ip")
    assert await throttle.take("ip") == 0 and await throttle.take("ip") > 0
    await throttle.clear("ip")
    assert await throttle.take("ip") == 0


async def test_throttles_of_two_names_are_apart(limits):
    first, second = limits.throttle("a", 1, 60.0), limits.throttle("b", 1, 60.0)
    assert await first.take("k") == 0 and await second.take("k") == 0 and await first.take("k") > 0


async def test_a_bucket_takes_its_burst_then_says_when_one_is_back(limits):
    bucket = limits.bucket("transfer", 2)
    assert [await bucket.take(7) for _ in range(2)] == [0.0, 0.0]
    assert 29 < await bucket.take(7) <= 30  # a token every 30 s
    await bucket.give_back(7)
    assert await bucket.take(7) == 0 and await bucket.take(7) > 0
    await bucket.give_back(8)  # a full bucket stays full
    assert [await bucket.take(8) for _ in range(3)][-1] > 0


async def test_a_backoff_lets_the_typo_and_one_more_then_waits(limits):
    backoff = limits.backoff("login_client", 1.0, 10.0)
    assert [await backoff.take("k") for _ in range(2)] == [0.0, 0.0]
    assert 0.9 < await backoff.take("k") <= 1.0
    await backoff.give_back("k")
    assert await backoff.take("k") == 0.0 and await backoff.take("k") == 0.0


async def test_a_memo_remembers_a_key(limits):
    memo = limits.memo("login_known", 60.0)
    await memo.add("pair")
    assert await memo.has("pair") and not await memo.has("other")


# -- exact across nodes ------------------------------------------------------------------------

async def test_rpm_is_exact_across_two_nodes(nodes):
    one, two = nodes[0].key_limiter(), nodes[1].key_limiter()
    limits = KeyLimits(rpm=10)
    admitted = await _across(30, (one, two), lambda limiter: _admitted(limiter, 1, limits))
    assert len([a for a in admitted if a is not None]) == 10
    assert all(isinstance(a, RedisAdmission) for a in admitted if a is not None)


async def test_concurrency_is_exact_across_two_nodes_and_freed_by_finish(nodes):
    one, two = nodes[0].key_limiter(), nodes[1].key_limiter()
    limits = KeyLimits(concurrency=3)
    admitted = [a for a in await _across(20, (one, two), lambda limiter: _admitted(limiter, 1, limits))
                if a is not None]
    assert len(admitted) == 3
    await admitted[0].finish(0)
    assert await _admitted(two, 1, limits) is not None and await _admitted(one, 1, limits) is None


async def test_a_throttle_is_exact_across_two_nodes(nodes):
    one, two = nodes[0].throttle("signup", 7, 3600.0), nodes[1].throttle("signup", 7, 3600.0)
    waits = await _across(50, (one, two), lambda throttle: throttle.take("10.0.0.1"))
    assert waits.count(0.0) == 7


async def test_a_bucket_is_exact_across_two_nodes(nodes):
    one, two = nodes[0].bucket("transfer", 5), nodes[1].bucket("transfer", 5)
    waits = await _across(30, (one, two), lambda bucket: bucket.take(42))
    assert waits.count(0.0) == 5


async def test_a_backoff_lets_two_of_many_concurrent_attempts_across_nodes(nodes):
    one, two = nodes[0].backoff("login_client", 5.0, 60.0), nodes[1].backoff("login_client", 5.0, 60.0)
    waits = await _across(20, (one, two), lambda backoff: backoff.take("alice|client"))
    assert waits.count(0.0) == 2


async def test_a_memo_is_seen_by_the_other_node(nodes):
    await nodes[0].memo("login_known", 60.0).add("alice|client")
    assert await nodes[1].memo("login_known", 60.0).has("alice|client")


async def test_tokens_finish_and_cancel_across_nodes(nodes):
    one, two = nodes[0].key_limiter(), nodes[1].key_limiter()
    limits = KeyLimits(tpm=1_000)
    first = await one.admit(1, limits, 600)
    assert await _admitted(two, 1, limits, 600) is None  # 600 + 600 > 1000
    await first.finish(100)  # it used 100: its reservation becomes that
    second = await two.admit(1, limits, 600)
    assert _remaining(second, "tokens") == 300
    await second.cancel()  # it counts for nothing
    assert _remaining(await one.admit(1, limits, 0), "tokens") == 900


async def test_a_dead_nodes_slot_is_freed_by_its_lease_and_a_live_one_renewed(nodes, monkeypatch):
    monkeypatch.setattr(shared_limits, "LEASE", 0.3)
    dead, one, two = redis_limits(nodes[0].redis).key_limiter(), nodes[0].key_limiter(), nodes[1].key_limiter()
    limits = KeyLimits(concurrency=1)
    await dead.admit(1, limits, 0)  # a node that dies: its request never finishes, its slot is not renewed
    live = await one.admit(2, limits, 0)
    assert await _admitted(two, 1, limits) is None
    await trio.sleep(0.2)
    await one.renew()  # node one still runs key 2's request
    await trio.sleep(0.2)
    assert await _admitted(two, 1, limits) is not None  # the dead one's lease is over
    assert await _admitted(two, 2, limits) is None  # the renewed one holds
    await live.finish(0)
    assert await _admitted(two, 2, limits) is not None


async def test_every_key_written_expires(nodes, shared_redis):
    limiter = nodes[0].key_limiter()
    await (await limiter.admit(1, KeyLimits(rpm=5, tpm=100, concurrency=2), 10)).finish(5)
    await nodes[0].throttle("t", 2, 60.0).take("k")
    await nodes[0].bucket("b", 2).take("k")
    await nodes[0].backoff("o", 1.0, 10.0).take("k")
    await nodes[0].memo("m", 60.0).add("k")
    keys = [key async for key in shared_redis.client.scan_iter(match=shared_redis.prefix + "*")]
    assert len(keys) >= 7
    ttls = [await shared_redis.client.ttl(key) for key in keys]
    assert all(0 < ttl <= 86_400 + 60 for ttl in ttls), ttls


# -- Redis down: the process's own limits ------------------------------------------------------

async def test_an_unreachable_redis_falls_back_to_the_process_limits_logged_once(caplog):
    caplog.set_level(logging.WARNING, "cheaplm.shared")
    async with open_shared("redis://127.0.0.1:1/0", "test:unreachable:", 0.5) as down:
        assert not down.up  # its first ping failed
        limits = redis_limits(down)
        limiter = limits.key_limiter()
        admitted = [await _admitted(limiter, 1, KeyLimits(rpm=2)) for _ in range(3)]
        assert [type(a) for a in admitted] == [Admission, Admission, type(None)]  # exact, in the process
        assert await limits.throttle("t", 1, 60.0).take("k") == 0.0
        assert limits.shared.calls == 0  # nothing waits on a Redis known to be down
    assert len([r for r in caplog.records if "not answering" in r.getMessage()]) == 1


async def test_a_failing_call_is_answered_in_the_process_then_redis_again(shared_redis):
    limits = redis_limits(shared_redis)
    throttle = limits.throttle("t", 1, 60.0)
    real = throttle.script

    def broken(*args, **kwargs):
        raise ConnectionError("redis went away")

    throttle.script = broken
    assert await throttle.take("k") == 0.0  # the process's throttle answered
    assert not shared_redis.up
    assert await throttle.take("k") > 0  # the process's count (Redis is not tried while down)
    throttle.script = real
    assert await shared_redis.ping() and shared_redis.up  # (what the watcher does every second)
    assert await throttle.take("k") == 0.0 and await throttle.take("k") > 0  # Redis's count again


async def test_admissions_end_where_they_began(shared_redis):
    limits = redis_limits(shared_redis)
    limiter = limits.key_limiter()
    shared_redis.failed(ConnectionError())
    local = await limiter.admit(1, KeyLimits(concurrency=1), 0)
    assert isinstance(local, Admission)
    assert await shared_redis.ping()
    remote = await limiter.admit(1, KeyLimits(concurrency=1), 0)  # Redis's count: the local one is not in it
    assert isinstance(remote, RedisAdmission)
    await local.finish(0)
    await remote.finish(0)
    assert limiter.local.windows == {} and limiter.running == {}



class _Outage:
    """A TCP relay to Redis that the test cuts (every connection dropped, the port
    closed) and restores on the same port: Redis going away and coming back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port, self.scope = target, 0, None

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as self.scope:
            listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
            self.port = listeners[0].socket.getsockname()[1]
            task_status.started()
            await trio.serve_listeners(self._relay, listeners)

    async def _relay(self, client) -> None:
        async with client, await trio.open_tcp_stream(*self.target) as server, trio.open_nursery() as nursery:
            async def pipe(source, sink) -> None:
                async for data in source:
                    await sink.send_all(data)
                nursery.cancel_scope.cancel()
            nursery.start_soon(pipe, client, server)
            nursery.start_soon(pipe, server, client)


async def test_redis_going_away_and_coming_back(nursery, redis_prefix, caplog):
    caplog.set_level(logging.WARNING, "cheaplm.shared")
    outage = _Outage(("127.0.0.1", 6379))
    await nursery.start(outage.serve)
    async with open_shared(f"redis://127.0.0.1:{outage.port}/0", redis_prefix, 0.5) as shared:
        try:
            limits = redis_limits(shared)
            throttle = limits.throttle("t", 1, 60.0)
            assert await throttle.take("k") == 0.0 and await throttle.take("k") > 0  # Redis's count
            outage.scope.cancel()  # Redis goes away
            await trio.sleep(0.05)
            assert await throttle.take("k") == 0.0  # the process's own count answers
            assert not shared.up
            await nursery.start(outage.serve)  # it is back, on the same port
            with trio.fail_after(5):  # (the watcher pings every second while it is down)
                while not shared.up:
                    await trio.sleep(0.05)
            assert await throttle.take("k") > 0  # Redis's count again: its first take is still there
        finally:
            with trio.CancelScope(shield=True):
                await delete_prefixed(shared)
    messages = [r.getMessage() for r in caplog.records if r.name == "cheaplm.shared"]
    assert len(messages) == 2 and "not answering" in messages[0] and "answers again" in messages[1]


class _Late:
    """A relay to Redis that, while ``late``, forwards commands at once but holds the
    answers: Redis runs each command, the node hears of it after its timeout."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port, self.late, self._on_time = target, 0, False, trio.Event()

    def on_time(self) -> None:
        self.late = False
        self._on_time.set()

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._relay, listeners)

    async def _relay(self, client) -> None:
        async with client, await trio.open_tcp_stream(*self.target) as server, trio.open_nursery() as nursery:
            async def pipe(source, sink, hold: bool) -> None:
                async for data in source:
                    if hold and self.late:
                        await self._on_time.wait()
                    await sink.send_all(data)
                nursery.cancel_scope.cancel()
            nursery.start_soon(pipe, client, server, False)
            nursery.start_soon(pipe, server, client, True)


async def test_what_a_late_redis_did_after_the_timeout_is_undone_when_it_answers_again(nursery, redis_prefix):
    """Redis ran the admit (a slot, a request in the window) but answered after
    redis_timeout: the process admitted the request itself. Those Redis records are of
    no request: when Redis answers again they are removed, not left to hold the key's only
    slot for the lease (60 s of 429s for nothing running)."""
    late = _Late(("127.0.0.1", 6379))
    await nursery.start(late.serve)
    async with open_shared(f"redis://127.0.0.1:{late.port}/0", redis_prefix, 0.3) as shared:
        try:
            limiter = redis_limits(shared).key_limiter()
            limits = KeyLimits(rpm=2, concurrency=1)
            late.late = True
            served_here = await limiter.admit(1, limits, 0)
            assert isinstance(served_here, Admission) and not shared.up
            await served_here.finish(0)
            late.on_time()
            with trio.fail_after(5):
                while not shared.up:
                    await trio.sleep(0.05)
            again = await limiter.admit(1, limits, 0)  # the slot is free, one request of two in the window
            assert isinstance(again, RedisAdmission) and _remaining(again, "requests") == 1
            await again.finish(0)
        finally:
            with trio.CancelScope(shield=True):
                await delete_prefixed(shared)
