"""The change feed's follower (proxy/shared/changes.py) without a store: which notices
the cursor hands out once, how it waits for a notice id committed late (PostgreSQL) and
gives it up, and what each notice forgets in the key cache. The follower against real
stores and a running gateway: tests/storage/test_changes_gateway.py."""

from __future__ import annotations

import trio
import trio.testing

from proxy.auth import KeyCache, hash_key, key_prefix
from proxy.shared.changes import MAX_GAP, Cursor, apply, follow_changes
from storage.base import Change, KeyRecord, StoreUnavailable


def notice(id: int, kind: str = "key", name: str = "sk-cl-aaaaaaaa") -> Change:
    return Change(id, kind, name, 0.0)


def test_each_notice_is_handed_out_once_and_the_cursor_moves_on():
    cursor = Cursor(upto=5)
    new, gave_up = cursor.take([notice(6), notice(7)], now=0)
    assert [c.id for c in new] == [6, 7] and not gave_up and cursor.upto == 7
    assert cursor.take([notice(7), notice(8)], now=1) == ([notice(8)], False)
    assert cursor.upto == 8


def test_a_notice_committed_after_a_higher_one_is_waited_for():
    cursor = Cursor(upto=0, wait=10)
    new, gave_up = cursor.take([notice(1), notice(3)], now=0)   # 2 is still being committed
    assert [c.id for c in new] == [1, 3] and cursor.upto == 1
    new, gave_up = cursor.take([notice(3)], now=5)              # read again: not handed out again
    assert new == [] and not gave_up and cursor.upto == 1
    new, gave_up = cursor.take([notice(2, "account", "4"), notice(3)], now=6)
    assert new == [notice(2, "account", "4")] and not gave_up and cursor.upto == 3


def test_a_missing_notice_is_given_up_after_the_wait():
    cursor = Cursor(upto=0, wait=10)
    cursor.take([notice(2)], now=0)
    assert cursor.take([notice(2)], now=9.9) == ([], False) and cursor.upto == 0
    assert cursor.take([notice(2)], now=10) == ([], True) and cursor.upto == 2
    assert cursor.take([notice(3)], now=11) == ([notice(3)], False)


def test_a_jump_past_notices_pruned_meanwhile_is_given_up_at_once():
    cursor = Cursor(upto=1)
    new, gave_up = cursor.take([notice(MAX_GAP + 10)], now=0)
    assert new == [notice(MAX_GAP + 10)] and gave_up and cursor.upto == MAX_GAP + 10


def record(prefix: str, account_id: int) -> KeyRecord:
    return KeyRecord(id=account_id * 10, account_id=account_id, username=f"u{account_id}", prefix=prefix,
                     key_hash=hash_key(prefix + "x" * 32), name="k", models=None, allow_stream=True, ips=(),
                     pass_thinking=None, created_at=0.0, last_used_at=None, revoked_at=None)


async def test_notices_forget_a_key_an_accounts_keys_and_wake_the_channel_sync():
    looked_up: list[str] = []
    owners = {"sk-cl-aaaaaaaa": 1, "sk-cl-bbbbbbbb": 1, "sk-cl-cccccccc": 2}

    async def lookup(prefix: str):
        looked_up.append(prefix)
        return record(prefix, owners[prefix])

    cache = KeyCache(lookup, 3600, trio.current_time)
    keys = [prefix + "x" * 32 for prefix in owners]
    for key in keys:
        await cache.authenticate(key)
    woken = []
    apply([notice(1, "account", "1")], cache, lambda: woken.append(1))
    assert woken == []
    for key in keys:
        await cache.authenticate(key)
    assert looked_up[3:] == ["sk-cl-aaaaaaaa", "sk-cl-bbbbbbbb"]      # account 1's keys only
    apply([notice(2, "key", "sk-cl-cccccccc"), notice(3, "channel", "primary"), notice(4, "channel", "x")],
          cache, lambda: woken.append(1))
    for key in keys:
        await cache.authenticate(key)
    assert looked_up[5:] == ["sk-cl-cccccccc"] and woken == [1]       # one channel round for the batch
    cache.clear()
    await cache.authenticate(keys[0])
    assert looked_up[6:] == ["sk-cl-aaaaaaaa"] and key_prefix(keys[0]) == "sk-cl-aaaaaaaa"


class FlakyFeed:
    """A store's feed that fails while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.notices: list[Change] = []

    async def last_change(self) -> int:
        if self.down:
            raise StoreUnavailable("the ledger is unavailable: test")
        return max((c.id for c in self.notices), default=0)

    async def changes_after(self, last: int, limit: int = 1000):
        if self.down:
            raise StoreUnavailable("the ledger is unavailable: test")
        return [c for c in self.notices if c.id > last][:limit]


async def test_after_the_feed_could_not_be_read_every_cached_key_is_forgotten(nursery, autojump_clock):
    feed = FlakyFeed()
    feed.notices.append(notice(1))
    async def lookup(prefix: str):
        return record(prefix, 1)

    cache = KeyCache(lookup, 3600, trio.current_time)
    forgotten = []
    cache.clear = lambda: forgotten.append("all")
    woken = []
    await nursery.start(follow_changes, feed, cache, lambda: woken.append(1), 0.25)
    await trio.sleep(1)
    assert forgotten == [] and woken == []                  # notice 1 was before the start
    feed.down = True
    await trio.sleep(1)
    feed.notices.append(notice(2, "channel", "primary"))
    feed.down = False
    await trio.sleep(0.3)
    assert forgotten == ["all"] and woken                   # what changed meanwhile is not known


async def test_a_key_forgotten_while_it_is_being_looked_up_is_not_cached_as_it_was(nursery):
    """The revocation commits and its notice is applied while a request's lookup (which
    read the key before) is still on its way back: that record serves that request, but
    is not cached for key_cache_seconds (the next request looks the key up again)."""
    looked_up, reading = [], trio.Event()
    answer: trio.MemorySendChannel
    answer, answers = trio.open_memory_channel(1)

    async def lookup(prefix: str):
        looked_up.append(prefix)
        reading.set()
        return await answers.receive()

    cache = KeyCache(lookup, 3600, trio.current_time)
    key = "sk-cl-aaaaaaaa" + "x" * 32
    nursery.start_soon(cache.authenticate, key)
    await reading.wait()
    cache.forget("sk-cl-aaaaaaaa")             # (the notice, applied by the follower meanwhile)
    await answer.send(record("sk-cl-aaaaaaaa", 1))  # what was read before the revocation
    await trio.testing.wait_all_tasks_blocked()
    await answer.send(record("sk-cl-aaaaaaaa", 1))
    await cache.authenticate(key)
    assert len(looked_up) == 2


async def test_a_flood_of_notices_is_read_in_full_batches_without_waiting_between_them(nursery, autojump_clock):
    feed = FlakyFeed()
    cache = KeyCache(None, 3600, trio.current_time)
    forgotten: list[str] = []
    cache.forget = forgotten.append
    await nursery.start(follow_changes, feed, cache, lambda: None, 0.25)
    feed.notices += [notice(i, "key", f"sk-cl-{i:08d}") for i in range(1, 10_001)]  # 10 batches
    await trio.sleep(0.3)  # (one poll)
    assert len(forgotten) == 10_000
