"""The Store contract for upstream channels (ChannelStore): the operator's overrides,
and the snapshots live gateway instances publish. Run against every backend (the
fixtures are conftest.py's); ``shared`` ones need several stores on one database."""

import time

import pytest

from storage.base import ChannelSnapshot, StoreError

from .helpers import LEASE, funded, row

ROWS = ({"name": "primary", "url": "http://127.0.0.1:1", "priority": 0, "weight": 1.5, "state": "cooling",
         "resting_seconds": 12.25, "disabled_reason": None, "in_flight": 2, "requests": 40, "failures": 3},
        {"name": "backup", "url": "https://backup.example/v1", "priority": 1, "weight": 1.0, "state": "disabled",
         "resting_seconds": None, "disabled_reason": "upstream answered 401: its credential was refused",
         "in_flight": 0, "requests": 1, "failures": 1})


async def test_overrides_are_recorded_replaced_and_versioned(store):
    assert list(await store.channel_overrides()) == []
    before = time.time()
    first = await store.set_channel_enabled("primary", False, "maintenance")
    assert (first.name, first.enabled, first.reason, first.version) == ("primary", False, "maintenance", 1)
    assert before - 1 <= first.set_at <= time.time() + 1
    await store.set_channel_enabled("backup", True, "")
    again = await store.set_channel_enabled("primary", True, "")
    assert (again.enabled, again.reason, again.version) == (True, "", 2)
    assert [(o.name, o.enabled, o.version) for o in await store.channel_overrides()] == [
        ("backup", True, 1), ("primary", True, 2)]
    with pytest.raises(StoreError):
        await store.set_channel_enabled("", False, "")


async def test_an_admin_store_may_override_but_not_publish(backend):
    admin = await backend.open(instance_id=None)
    try:
        await admin.set_channel_enabled("primary", False, "")
        assert [o.name for o in await admin.channel_overrides()] == ["primary"]
        with pytest.raises(StoreError):
            await admin.publish_channels(ROWS)
        assert list(await admin.channel_status()) == []
    finally:
        await admin.aclose()


async def test_a_snapshot_comes_back_as_published_and_the_latest_replaces_it(store):
    assert list(await store.channel_status()) == []
    await store.publish_channels(ROWS)
    before = time.time()
    await store.publish_channels(ROWS[:1])
    [snapshot] = await store.channel_status()
    assert isinstance(snapshot, ChannelSnapshot)
    assert snapshot.instance_id == "inst-a" and snapshot.channels == ROWS[:1]
    assert before - 1 <= snapshot.at <= time.time() + 1


async def test_channel_writes_leave_the_ledger_alone(store):
    key, account = await funded(store, 1000)
    hold = await store.place_hold(account.id, 100, "r")
    await store.publish_channels(ROWS)
    await store.set_channel_enabled("primary", False, "")
    await store.settle(hold, row("r", key.id, 10))
    assert (await store.get_account("u")).balance == 990
    assert await store.check() == []


async def test_only_live_instances_snapshots_are_returned(shared):
    a, b = await shared.open("inst-a"), await shared.open("inst-b")
    await a.register_instance(30.0)
    await b.register_instance(LEASE)
    await a.publish_channels(ROWS[:1])
    await b.publish_channels(ROWS)
    reader = await shared.open(instance_id=None)
    assert [(s.instance_id, len(s.channels)) for s in await reader.channel_status()] == [("inst-a", 1),
                                                                                        ("inst-b", 2)]
    later = await shared.open(instance_id=None, clock=lambda: time.time() + 31)  # a's lease has run out
    assert [s.instance_id for s in await later.channel_status()] == ["inst-b"]
    await b.unregister_instance()                                                # b stopped
    assert [s.instance_id for s in await reader.channel_status()] == ["inst-a"]
    await a.publish_channels(ROWS)           # a publish sweeps the snapshots of instances that are gone
    raw = shared.raw()
    assert raw.execute("SELECT instance_id FROM channel_snapshots").fetchall() == [("inst-a",)]
    raw.close()
    for store in (a, b, reader, later):
        await store.aclose()
