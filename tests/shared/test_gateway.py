"""Gateways of one fleet (in-process, one ledger, one Redis prefix): a key's limits hold
across them; with Redis unreachable each serves on its own limits and says so in
/health, which stays "ok"."""

from __future__ import annotations

import logging
from dataclasses import replace

import trio

from proxy.shared.limits import RedisLimits
from storage.base import KeyLimits

from tests.conftest import Account, at_once, http_client, in_process_config, make_account, serve_in_process
from tests.shared.redis import REDIS_URL, redis_prefix, shared_redis  # noqa: F401 (fixtures)

MESSAGE = {"model": "claude-haiku-4.5", "max_tokens": 20, "messages": [{"role": "user", "content": "hi [sim deltas=2]"}]}


async def _fleet(nursery, tmp_path, url: str, prefix: str, n: int = 2):
    # (a generous timeout: these tests are about exactness, not a loaded test machine's latency)
    config = replace(in_process_config(tmp_path), redis_url=url, redis_prefix=prefix, redis_timeout=5.0)
    return [await nursery.start(serve_in_process, config) for _ in range(n)]


async def test_a_keys_rpm_holds_across_two_gateways(nursery, tmp_path, shared_redis):
    one, two = await _fleet(nursery, tmp_path, REDIS_URL, shared_redis.prefix)
    assert isinstance(one.gateway.limits, RedisLimits) and isinstance(two.gateway.limits, RedisLimits)
    alice = await make_account(one, limits=KeyLimits(rpm=10))
    clients = [alice.http(), Account(alice.username, alice.key, two).http()]
    turn = iter(range(30))
    async with clients[0], clients[1]:
        answers = await at_once(30, lambda: clients[next(turn) % 2].post("/v1/messages", json=MESSAGE))
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) == 10 and statuses.count(429) == 20
    assert len(one.upstream.seen()) + len(two.upstream.seen()) == 10
    assert one.gateway.limits.shared.calls + two.gateway.limits.shared.calls == 30  # an admit each, no finish (rpm)
    async with http_client(one) as http:
        health = (await http.get("/health")).json()
    assert health["status"] == "ok" and health["redis"]["up"] is True
    assert health["redis"]["limits"] == "shared by the fleet"


async def test_a_key_without_limits_never_touches_redis(nursery, tmp_path, shared_redis):
    (one,) = await _fleet(nursery, tmp_path, REDIS_URL, shared_redis.prefix, 1)
    alice = await make_account(one)
    async with alice.http() as http:
        assert (await http.post("/v1/messages", json=MESSAGE)).status_code == 200
    assert one.gateway.limits.shared.calls == 0


async def test_redis_unreachable_the_gateway_serves_on_its_own_limits(nursery, tmp_path, caplog):
    caplog.set_level(logging.WARNING, "cheaplm.shared")
    (one,) = await _fleet(nursery, tmp_path, "redis://:secret@127.0.0.1:1/0", "test:unreachable:", 1)
    alice = await make_account(one, limits=KeyLimits(rpm=3))
    async with alice.http() as http:
        statuses = [(await http.post("/v1/messages", json=MESSAGE)).status_code for _ in range(4)]
        health = (await http.get("/health")).json()
    assert statuses == [200, 200, 200, 429]  # the process's limiter, exact
    assert health["status"] == "ok"
    assert health["redis"] == {"url": "redis://:***@127.0.0.1:1/0", "up": False,
                               "limits": "per node until Redis answers again"}
    await trio.sleep(1.2)  # the watcher pings again, and fails again: still one line
    warnings = [r.getMessage() for r in caplog.records if r.name == "cheaplm.shared"]
    assert len(warnings) == 1 and "secret" not in warnings[0]


async def test_an_upstream_429_on_one_gateway_rests_the_channel_on_the_other(nursery, tmp_path, shared_redis):
    one, two = await _fleet(nursery, tmp_path, REDIS_URL, shared_redis.prefix)
    alice = await make_account(one)
    limited = {**MESSAGE, "messages": [{"role": "user", "content": "hi [sim fault=429 retry_after=30]"}]}
    async with alice.http() as http:
        assert (await http.post("/v1/messages", json=limited)).status_code == 429
    with trio.fail_after(1.5):  # (each gateway's round: every 0.5 s)
        while two.gateway.upstream.describe(trio.current_time())[0]["state"] != "cooling":
            await trio.sleep(0.02)
    async with Account(alice.username, alice.key, two).http() as http:
        refused = await http.post("/v1/messages", json=MESSAGE)
    assert refused.status_code == 429 and "rate limiting this gateway" in refused.json()["error"]["message"]
    assert 25 <= int(refused.headers["retry-after"]) <= 30
    assert two.upstream.seen() == []  # the rest was taken up: nothing went to its upstream
