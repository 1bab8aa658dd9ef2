"""proxy/shared/channels.py: a channel's rest (a 429/529 cooldown, an open circuit) on
one node is a rest on every node of the fleet, through the real Redis; an operator's
enable still ends it; Redis down changes nothing but the sharing."""

from __future__ import annotations

import pytest
import trio

from proxy.shared.channels import SharedHealth
from proxy.shared.limits import Shared
from proxy.upstream.operator import Overrides
from proxy.upstream.router import Channel, Router, RoutingPolicy
from storage.base import ChannelOverride

from tests.shared.redis import node, redis_prefix, second_node, shared_redis  # noqa: F401 (fixtures)


class _Nowhere:
    idle_timeout = 1.0
    label = "nowhere"
    url_label = "http://nowhere.example"


def _node(shared) -> tuple[Router, SharedHealth]:
    router = Router([Channel(n, _Nowhere()) for n in ("a", "b")], RoutingPolicy())
    return router, SharedHealth(Shared(shared), router)


@pytest.fixture
def fleet(shared_redis, second_node):
    return _node(shared_redis), _node(second_node)


def _state(router: Router, name: str) -> str:
    return router.state.health(name).state(trio.current_time())


async def _rounds(*nodes) -> None:
    for _, sync in nodes:
        await sync.round()


async def test_a_cooldown_on_one_node_rests_the_channel_on_every_node(fleet):
    (one, sync_one), (two, sync_two) = fleet
    await _rounds(*fleet)
    one.state.health("a").rate_limited(trio.current_time(), 20.0)
    one.channels[0].rested_by = 429
    await _rounds(*fleet)
    assert (_state(two, "a"), _state(two, "b")) == ("cooling", "healthy")
    resting = two.state.health("a").until(trio.current_time()) - trio.current_time()
    assert 19 < resting <= 20.01 and two.channels[0].rested_by == 429
    assert two.nothing_available(_Request("m"), trio.current_time()).status == 429  # the upstream's own limit


async def test_an_open_circuit_on_one_node_is_open_on_every_node(fleet):
    (one, _), (two, _) = fleet
    now = trio.current_time()
    for request in ("r1", "r2", "r3"):
        one.state.health("b").failed(now, request)
    assert _state(one, "b") == "open"
    await _rounds(*fleet)
    assert _state(two, "b") == "open" and _state(two, "a") == "healthy"
    health = two.state.health("b")
    assert health.opened == 1 and health.available(health.open_until)  # a probe once the interval is over


async def test_the_operators_enable_ends_the_rest_everywhere_and_for_nodes_to_come(fleet, shared_redis):
    (one, _), (two, _) = fleet
    one.state.health("a").rate_limited(trio.current_time(), 60.0)
    await _rounds(*fleet)
    assert _state(two, "a") == "cooling"
    for router in (one, two):  # disabled, then enabled: each node applies it from the store
        overrides = Overrides(router)
        overrides.apply([ChannelOverride("a", False, "", 0.0, 1)])
        overrides.apply([ChannelOverride("a", True, "", 0.0, 2)])
    await _rounds(*fleet)
    await _rounds(*fleet)
    assert _state(one, "a") == _state(two, "a") == "healthy"
    async with node(shared_redis.prefix) as later:
        third = _node(later)
        await _rounds(third)
        assert _state(third[0], "a") == "healthy"


async def test_a_longer_rest_wins_whatever_the_order(fleet):
    (one, _), (two, _) = fleet
    now = trio.current_time()
    one.state.health("a").rate_limited(now, 30.0)
    two.state.health("a").rate_limited(now, 10.0)
    await _rounds(*fleet)
    await _rounds(*fleet)
    assert all(router.state.health("a").cooling_until == pytest.approx(now + 30.0, abs=0.1) for router in (one, two))


async def test_the_running_task_shares_a_rest_within_a_second(fleet):
    (one, sync_one), (two, sync_two) = fleet
    async with trio.open_nursery() as nursery:
        await nursery.start(sync_one.run)
        await nursery.start(sync_two.run)
        one.state.health("a").rate_limited(trio.current_time(), 30.0)
        with trio.fail_after(1.5):  # (INTERVAL 0.5 s: a round of each node)
            while _state(two, "a") != "cooling":
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()


async def test_redis_down_leaves_each_node_its_own_health(shared_redis):
    router, sync = _node(shared_redis)
    shared_redis.failed(ConnectionError())
    router.state.health("a").rate_limited(trio.current_time(), 5.0)
    await sync.round()  # no call, no error
    assert sync.shared.calls == 0 and _state(router, "a") == "cooling"


class _Model:
    def __init__(self, id: str) -> None:
        self.id = id


class _Request:
    def __init__(self, model: str) -> None:
        self.model = _Model(model)


async def test_a_hash_written_by_something_else_rests_nothing_and_raises_nothing(shared_redis):
    """The sync runs in the gateway's own nursery: a field it cannot read (someone with
    access to Redis, another version) must not end the gateway."""
    router, sync = _node(shared_redis)
    await shared_redis.client.hset(sync.key, {"a|cool": "soon", "a|by": "x", "b|open": "9e999999", "b|opened": "?"})
    await sync.round()
    assert _state(router, "a") == "healthy" and _state(router, "b") == "healthy"
