"""The Store contract for the change feed (ChangeStore): every change of what running
gateways cache writes exactly one notice, in the change's own transaction; a refused
change writes none; notices are read by id and pruned after an hour. Run against every
backend (the fixtures are conftest.py's)."""

import pytest

from storage.base import NotFound, StoreError

from .helpers import LEASE, funded, new_key


def _seen(changes) -> list[tuple[str, str]]:
    return [(c.kind, c.name) for c in changes]


async def test_each_change_of_a_key_an_account_or_a_channel_writes_one_notice(store):
    key, account = await funded(store, 1)
    start = await store.last_change()
    await store.revoke_key(key.prefix)
    await store.revoke_key(key.prefix)                  # already revoked: nothing changed
    await store.create_user("v")
    other = await new_key(store, "v")
    await store.set_key_limits(other.prefix, {"rpm": 10})
    await store.set_key_expiry(other.prefix, 2e9)
    await store.set_disabled("u", True)
    await store.set_disabled("u", False)
    await store.set_channel_enabled("primary", False, "maintenance")
    await store.credit("u", 1_000_000, "payment", paid=1_000_000)  # the first payment ends the free tier
    await store.credit("u", 1_000_000, "payment", paid=1_000_000)  # (once)
    await store.credit("u", 5, "credit")                           # a balance is not cached: no notice
    changes = await store.changes_after(start)
    assert _seen(changes) == [("key", key.prefix), ("key", other.prefix), ("key", other.prefix),
                              ("account", str(account.id)), ("account", str(account.id)),
                              ("channel", "primary"), ("account", str(account.id))]
    ids = [c.id for c in changes]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and ids[0] > start
    assert await store.last_change() == ids[-1]
    assert _seen(await store.changes_after(ids[1], limit=2)) == [("key", other.prefix), ("account", str(account.id))]
    assert list(await store.changes_after(ids[-1])) == []


async def test_a_refused_change_writes_no_notice(store):
    await store.create_user("u")
    start = await store.last_change()
    for change in (store.revoke_key("sk-cl-nothere"), store.set_key_limits("sk-cl-nothere", {"rpm": 1}),
                   store.set_key_expiry("sk-cl-nothere", None), store.set_disabled("nobody", True)):
        with pytest.raises(NotFound):
            await change
    with pytest.raises(StoreError):
        await store.set_channel_enabled("", False, "")
    assert list(await store.changes_after(start)) == []


async def test_a_change_is_never_committed_without_its_notice(shared):
    """The notice is written in the change's transaction: when it cannot be written
    (here its table is gone), the change is undone too."""
    store = await shared.open("inst-a")
    try:
        key, _ = await funded(store, 1)
        raw = shared.raw()
        raw.execute("DROP TABLE changes")
        raw.close()
        for change in (store.revoke_key(key.prefix), store.set_disabled("u", True),
                       store.set_key_limits(key.prefix, {"rpm": 1}), store.set_channel_enabled("c", False, "")):
            with pytest.raises(Exception):
                await change
        found = await store.find_key(key.prefix)
        assert found.revoked_at is None and not found.account_disabled and found.limits.rpm is None
        assert list(await store.channel_overrides()) == []
    finally:
        await store.aclose()


async def test_another_store_on_the_ledger_reads_the_notices(pair):
    a, b = pair
    key, account = await funded(a, 1)
    start = await b.last_change()
    await a.revoke_key(key.prefix)
    assert _seen(await b.changes_after(start)) == [("key", key.prefix)]


async def test_notices_older_than_an_hour_are_pruned_by_the_next_change(backend):
    clock = [1_000_000.0]
    store = await backend.open("inst-a", clock=lambda: clock[0])
    try:
        await store.register_instance(LEASE)
        await store.set_channel_enabled("old", False, "")
        clock[0] += 3000
        await store.set_channel_enabled("recent", False, "")
        assert _seen(await store.changes_after(0)) == [("channel", "old"), ("channel", "recent")]
        clock[0] += 700                                 # "old" is 3700 s old, "recent" 700 s
        await store.set_channel_enabled("new", False, "")
        assert _seen(await store.changes_after(0)) == [("channel", "recent"), ("channel", "new")]
        clock[0] += 7200
        last = await store.last_change()
        await store.set_channel_enabled("newer", False, "")
        assert [(c.id, c.name) for c in await store.changes_after(0)] == [(last + 1, "newer")]  # ids never reused
    finally:
        await store.aclose()
