"""Changes made by another process reach a running gateway through the change feed
within a second, on SQLite and on PostgreSQL: a second store on the same ledger (what
the CLI, another node's dashboard or another worker is) revokes a key, changes its
limits, disables its user, disables a channel; the gateway, serving with its default
poll interval and a key cache of a minute (so the cache's expiry cannot be what
refreshed it), refuses or applies it within 1 s."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import pytest
import trio

from proxy.accounts.service import Accounts
from proxy.auth import key_prefix
from proxy.config import Config
from storage import open_store

from ..conftest import in_process_config, make_account, serve_in_process
from .backends import PostgresBackend

WITHIN = 1.0  # seconds: the bound (change_poll_interval is 0.25 by default)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "ledger.db")
    database = request.getfixturevalue("pg_database")
    if not isinstance(database, str):
        pytest.skip(f"PostgreSQL is unreachable: {database}")
    return PostgresBackend("postgresql", database).url


@pytest.fixture
async def served(nursery, tmp_path, ledger_url):
    config = replace(in_process_config(tmp_path), database_url=ledger_url, key_cache_seconds=60)
    assert config.change_poll_interval == Config.change_poll_interval == 0.25
    running = await nursery.start(partial(serve_in_process, config, follow=True))
    alice = await make_account(running, "alice")
    other = await open_store(ledger_url)  # as `cheaplm` in another process opens it: no instance id
    yield running, alice, Accounts(other)
    await other.aclose()


async def _status(alice) -> int:
    async with alice.http() as http:
        return (await http.get("/v1/models")).status_code


async def _until(check, within: float = WITHIN):
    """Poll ``check()`` until it is truthy: fails after ``within`` seconds."""
    with trio.fail_after(within):
        while not (result := await check()):
            await trio.sleep(0.01)
    return result


async def test_a_key_revoked_elsewhere_is_refused_within_a_second(served):
    running, alice, other = served
    assert await _status(alice) == 200  # cached for a minute
    await other.revoke_key(key_prefix(alice.key))
    await _until(lambda: _is(_status(alice), 401))


async def test_a_user_disabled_elsewhere_is_refused_within_a_second_and_enabled_again(served):
    running, alice, other = served
    assert await _status(alice) == 200
    await other.set_disabled("alice", True)
    await _until(lambda: _is(_status(alice), 403))
    await other.set_disabled("alice", False)
    await _until(lambda: _is(_status(alice), 200))


async def test_a_key_limit_set_elsewhere_applies_within_a_second(served):
    running, alice, other = served
    assert (await running.gateway.keys.authenticate(alice.key)).limits.rpm is None
    await other.set_key_limits(alice.key, {"rpm": 7})

    async def rpm() -> bool:
        return (await running.gateway.keys.authenticate(alice.key)).limits.rpm == 7
    await _until(rpm)


async def test_a_channel_disabled_elsewhere_is_applied_within_a_second(served):
    running, alice, other = served
    health = running.gateway.upstream.state.health("default")
    assert not health.disabled
    await other.store.set_channel_enabled("default", False, "maintenance")  # `cheaplm upstream disable`

    async def disabled() -> bool:
        return health.disabled
    await _until(disabled)
    await other.store.set_channel_enabled("default", True, "")
    await _until(lambda: _is(disabled(), False))


async def _is(awaitable, expected) -> bool:
    return (await awaitable) == expected
