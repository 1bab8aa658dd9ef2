"""count_tokens: free upstream, so outside the keys' rpm and the free tier's rate, within
buckets of its own per key and per account; it needs a positive balance or the free tier;
recorded like every request. And the free tier's rate is per account, not per key."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from proxy.config import AccountsConfig
from proxy.serve import serve
from storage.base import KeyLimits

from tests.conftest import at_once, make_account

BODY = {"model": "claude-haiku-4.5", "messages": [{"role": "user", "content": "hi"}]}
PATH = "/v1/messages/count_tokens"


async def _burst(account, n: int) -> list[int]:
    return sorted(r.status_code for r in await account.post_at_once(BODY, n, PATH))


async def _paid(running, name: str, balance: int, **options):
    """An account that has paid once (no free tier), left with ``balance``."""
    account = await make_account(running, name, credit_micro=0, **options)
    await running.gateway.store.credit(name, 1_000_000, "payment", paid=1_000_000)
    if balance < 1_000_000:
        await running.gateway.store.create_user(name + "-sink")
        me = await running.gateway.store.get_account(name)
        await running.gateway.store.transfer(me.id, name + "-sink", 1_000_000 - balance, "t")
    return account


async def test_claude_codes_context_burst_completes_at_once_on_a_key_with_rpm_5(gateway, simulator):
    account = await _paid(gateway, "cc", 1_000_000, limits=KeyLimits(rpm=5))
    assert await _burst(account, 14) == [200] * 14
    assert len(simulator.seen(PATH)) == 14
    async with account.http() as http:  # the key's rpm is untouched by the counts
        for _ in range(5):
            assert (await http.post("/v1/messages", json={**BODY, "max_tokens": 5})).status_code == 200


async def test_the_burst_completes_on_the_free_tier_and_the_free_rate_is_per_account(nursery, config, simulator):
    running = await nursery.start(serve, replace(config, accounts=AccountsConfig(free_tier_rpm=3)))
    first = await make_account(running, "free", credit_micro=1_000_000)  # a signup credit: never paid
    assert await _burst(first, 14) == [200] * 14
    others = []
    for i in range(4):  # five keys of one free account
        from proxy.accounts.service import Accounts
        key, _ = await Accounts(running.gateway.store).create_key(running.gateway.catalog, "free")
        others.append(replace(first, key=key))
    statuses = []
    for account in [first, *others]:
        async with account.http() as http:
            for _ in range(3):
                statuses.append((await http.post("/v1/messages", json={**BODY, "max_tokens": 5})).status_code)
    assert statuses.count(200) == 3 and statuses.count(429) == 12  # 3 a minute for the account, not per key


async def test_counts_have_their_own_buckets_per_key_and_per_account(nursery, config, simulator):
    running = await nursery.start(serve, replace(config, count_tokens_per_minute=4,
                                                 count_tokens_account_per_minute=6))
    one = await _paid(running, "acct", 1_000_000)
    from proxy.accounts.service import Accounts
    key, _ = await Accounts(running.gateway.store).create_key(running.gateway.catalog, "acct")
    two = replace(one, key=key)
    assert await _burst(one, 6) == [200] * 4 + [429] * 2  # the key's bucket
    assert await _burst(two, 6) == [200] * 2 + [429] * 4  # the account's bucket: 6 in all
    async with two.http() as http:
        refused = await http.post(PATH, json=BODY)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert len(simulator.seen(PATH)) == 6


async def test_counting_needs_a_positive_balance_or_the_free_tier(gateway, simulator):
    broke = await _paid(gateway, "broke", 0)
    async with broke.http() as http:
        refused = await http.post(PATH, json=BODY)
    assert refused.status_code == 402 and refused.json()["error"]["type"] == "billing_error"
    free = await make_account(gateway, "free", credit_micro=0)  # never paid, $0: the free tier counts
    async with free.http() as http:
        assert (await http.post(PATH, json=BODY)).status_code == 200
    assert len(simulator.seen(PATH)) == 1


async def test_counts_are_in_the_request_log_and_the_metrics(alice, gateway, caplog):
    caplog.set_level(logging.INFO, "cheaplm.requests")
    async with alice.http() as http:
        assert (await http.post(PATH, json=BODY)).status_code == 200
        assert (await http.post(PATH, json={"model": "nope", "messages": []})).status_code in (400, 404)
        metrics = (await http.get("/metrics")).text
    lines = [r.getMessage() for r in caplog.records if "endpoint=count_tokens" in r.getMessage()]
    assert len(lines) == 2 and "status=200" in lines[0] and "model=claude-haiku-4.5" in lines[0]
    assert 'endpoint="count_tokens"' in metrics
