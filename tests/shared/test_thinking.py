"""The thinking memory as a ``ThinkingMemory``, in-process (``ThinkingStore``) and in the
fleet's Redis (``SharedThinking``), by the same tests: found by each tool_use id and only
by its key, the sliding TTL, the per-key and overall quotas (least recently used first),
re-puts; then what only Redis has: one copy per turn, every key expiring, blocks byte for
byte, and the fallback to this process's store while Redis is down or silent. The real
Redis, a prefix per test (tests/shared/fleet_redis.py); the clock is turned by hand."""

from __future__ import annotations

import pytest
import trio

from proxy.protocol.thinking import Placeholder, Turn
from proxy.protocol.thinking_memory import ThinkingStore
from proxy.shared.client import SharedRedis
from proxy.shared.thinking import SharedThinking, decode, encode
from tests.fakes import HandClock
from tests.shared.fleet_redis import REDIS_URL, shared_redis

TWO = Turn(({"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a+/=="},
            {"type": "thinking", "thinking": 'Two files: read "a.txt" first,\nthen b ☃ \U0001F600 \\ done.',
             "signature": "ErUBCkYIBxgCIkDx9+/Qx=="},
            Placeholder("text"), Placeholder("tool_use", "toolu_01A"),
            {"type": "thinking", "thinking": "Now b.", "signature": "EpgBCkYIBxgCIkB2sig=="},
            Placeholder("tool_use", "toolu_01B")))


def turn(call_id: str, text: str = "x") -> Turn:
    return Turn(({"type": "thinking", "thinking": text, "signature": "s"}, Placeholder("tool_use", call_id)))


@pytest.fixture(params=["in-process", "redis"])
async def memory_of(request):
    """(make(**ThinkingStore settings) -> a memory, the clock it runs on)."""
    clock = HandClock()
    if request.param == "in-process":
        yield (lambda **settings: ThinkingStore(clock=clock, **settings)), clock
        return
    async with shared_redis() as shared:
        yield (lambda **settings: SharedThinking(shared, ThinkingStore(**settings), clock=clock)), clock


async def found(memory, key_id: int, *ids: str) -> set[str]:
    return set(await memory.recall(key_id, ids))


async def test_a_turn_is_found_by_each_of_its_tool_use_ids_and_only_by_its_key(memory_of):
    make, _ = memory_of
    memory = make()
    await memory.remember(3, TWO)
    assert await memory.recall(3, ["toolu_01A", "toolu_01B", "toolu_zz"]) == {"toolu_01A": TWO, "toolu_01B": TWO}
    assert await memory.recall(4, ["toolu_01A"]) == {} and await memory.recall(3, []) == {}


async def test_the_ttl_slides(memory_of):
    make, clock = memory_of
    memory = make(ttl=3600)
    await memory.remember(1, turn("toolu_1"))
    await memory.remember(1, TWO)
    clock.now += 3599
    assert await found(memory, 1, "toolu_1") == {"toolu_1"}       # found: its hour starts again
    clock.now += 2
    assert await found(memory, 1, "toolu_01A", "toolu_01B") == set()  # untouched for 3601 s: gone
    clock.now += 3597
    assert await found(memory, 1, "toolu_1") == {"toolu_1"}
    clock.now += 3600
    assert await found(memory, 1, "toolu_1") == set()


async def test_one_key_cannot_evict_every_other_keys_turns(memory_of):
    make, _ = memory_of
    memory = make(max_turns=100, max_turns_per_key=10)
    await memory.remember(1, turn("carol"))
    for i in range(30):
        await memory.remember(2, turn(f"dave-{i}"))
    assert await found(memory, 1, "carol") == {"carol"}
    assert await found(memory, 2, *(f"dave-{i}" for i in range(30))) == {f"dave-{i}" for i in range(20, 30)}


async def test_a_keys_byte_share_is_bounded_too(memory_of):
    make, _ = memory_of
    a, b = turn("a", "a" * 1000), turn("b", "b" * 1000)
    memory = make(max_bytes_per_key=a.size + b.size - 1)
    await memory.remember(7, a)
    await memory.remember(7, b)
    await memory.remember(8, turn("other"))
    assert await found(memory, 7, "a", "b") == {"b"} and await found(memory, 8, "other") == {"other"}


async def test_the_least_recently_used_go_first_with_all_their_ids(memory_of):
    make, clock = memory_of
    memory = make(max_turns=2)
    await memory.remember(1, turn("toolu_1"))
    clock.now += 1
    await memory.remember(1, TWO)
    clock.now += 1
    await memory.remember(1, turn("c"))                          # toolu_1's turn is the least recent
    assert await found(memory, 1, "toolu_1") == set()
    assert await found(memory, 1, "toolu_01A") == {"toolu_01A"}  # now TWO is the most recent
    await memory.remember(1, turn("d"))                          # "c" goes
    assert await found(memory, 1, "c", "d") == {"d"}
    await memory.remember(2, turn("e"))                          # TWO goes, both its ids (another key's put)
    assert await found(memory, 1, "toolu_01A", "toolu_01B", "d") == {"d"}
    assert await found(memory, 2, "e") == {"e"}


async def test_the_byte_budget_and_a_turn_larger_than_it(memory_of):
    make, _ = memory_of
    a, b, c = turn("a", "a" * 1000), turn("b", "b" * 1000), turn("c", "c" * 1000)
    memory = make(max_bytes=a.size + b.size + c.size - 1)
    await memory.remember(1, a)
    await memory.remember(1, b)
    assert await found(memory, 1, "a") == {"a"}                   # b is now the least recent
    await memory.remember(1, c)
    assert await found(memory, 1, "a", "b", "c") == {"a", "c"}
    await memory.remember(1, turn("big", "z" * 4000))             # larger than the whole budget: not kept
    assert await found(memory, 1, "big", "a", "c") == {"a", "c"}


async def test_a_re_put_replaces_the_turns_it_overlaps(memory_of):
    make, _ = memory_of
    memory = make()
    await memory.remember(1, TWO)
    newer = turn("toolu_01A", "again")
    await memory.remember(1, newer)                               # TWO goes entirely
    assert await memory.recall(1, ["toolu_01A", "toolu_01B"]) == {"toolu_01A": newer}
    await memory.remember(2, TWO)                                 # another key's copy is its own
    assert await memory.recall(1, ["toolu_01A"]) == {"toolu_01A": newer}
    assert (await memory.recall(2, ["toolu_01B"]))["toolu_01B"] == TWO


# -- Redis only --------------------------------------------------------------------------

async def _keys(shared: SharedRedis) -> dict[str, int]:
    """Every key under the test's prefix: its TTL in ms."""
    keys = [k async for k in shared.client.scan_iter(match=shared.prefix + "*")]
    return {k.decode().removeprefix(shared.prefix): await shared.client.pttl(k) for k in keys}


async def test_a_turn_is_stored_once_every_key_expires_and_an_expired_turn_leaves_nothing():
    clock = HandClock()
    async with shared_redis() as shared:
        memory = SharedThinking(shared, ThinkingStore(ttl=60), clock=clock)
        await memory.remember(5, TWO)
        keys = await _keys(shared)
        assert sorted(k for k in keys if ":t:" in k or ":i:" in k) == [
            "thinking:5:i:toolu_01A", "thinking:5:i:toolu_01B", "thinking:5:t:toolu_01A"]
        assert all(ttl > 60_000 for ttl in keys.values())            # nothing lives forever
        clock.now += 61
        await memory.remember(6, turn("f"))                          # sweeps the expired
        keys = await _keys(shared)
        assert not any(k.startswith("thinking:5:") and (":t:" in k or ":i:" in k) for k in keys)
        assert int(await shared.client.get(shared.key("thinking", "5", "size")) or 0) == 0
        assert int(await shared.client.get(shared.key("thinking", "size"))) == turn("f").size


@pytest.mark.parametrize("text", ["plain", "é ☃ \U0001F600 \\ \" \n \u2028", "lone \ud800 surrogate"])
async def test_blocks_come_back_byte_for_byte(text):
    one = Turn(({"type": "thinking", "thinking": text, "signature": "Eq+/=="}, Placeholder("tool_use", "t1")))
    assert decode(encode(one)) == one
    async with shared_redis() as shared:
        memory = SharedThinking(shared)
        await memory.remember(1, one)
        back = (await SharedThinking(shared).recall(1, ["t1"]))["t1"]  # (another node's memory)
        assert back.layout[0] == one.layout[0] and back.layout[0]["thinking"] == text and back.size == one.size


async def test_while_redis_is_down_turns_are_kept_in_this_process_and_found_after():
    async with shared_redis() as shared:
        memory = SharedThinking(shared, clock=HandClock())
        await memory.remember(1, turn("before"))
        shared.up = False                                            # (as failed() leaves it)
        await memory.remember(1, turn("during"))
        assert await found(memory, 1, "before", "during") == {"during"}
        shared.up = True                                             # a ping answered
        await memory.remember(1, turn("after"))
        assert await found(memory, 1, "before", "during", "after") == {"before", "during", "after"}
        assert await found(SharedThinking(shared, clock=memory.clock), 1, "during", "after") == {"after"}  # a node


async def test_a_redis_that_refuses_or_never_answers_falls_back_and_is_marked_down():
    with trio.socket.socket() as silent:                             # accepts, never answers
        await silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        for url in ("redis://127.0.0.1:1/0", f"redis://127.0.0.1:{port}/0"):
            async with shared_redis(timeout=0.2, url=url) as shared:
                memory = SharedThinking(shared, clock=HandClock())
                with trio.fail_after(5):
                    await memory.remember(1, turn("here"))
                assert shared.up is False, url
                assert await found(memory, 1, "here") == {"here"}
                shared.up = True
                with trio.fail_after(5):
                    assert await found(memory, 1, "here") == {"here"}   # Redis failed again: this process's
                assert shared.up is False
    assert REDIS_URL.startswith("redis://")


async def test_a_turn_that_does_not_decode_is_not_found_and_raises_nothing():
    """A turn overwritten by someone with access to Redis (or by another version) is a
    turn not found (the request goes on without it), not an error of the request."""
    async with shared_redis() as shared:
        memory = SharedThinking(shared, clock=HandClock())
        await memory.remember(1, turn("toolu_x"))
        blobs = [key async for key in shared.client.scan_iter(match=shared.prefix + "thinking:1:t:*")]
        assert blobs
        for blob, junk in zip(blobs * 3, (b"not json", b'{"a": 1}', b"[1, 2]")):
            await shared.client.set(blob, junk)
            assert await found(memory, 1, "toolu_x") == set()
