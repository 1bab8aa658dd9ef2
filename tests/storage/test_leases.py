"""Who counts as gone (leases.py), and keep_lease: register, recover, renew, sweep."""

import os
import subprocess
import sys
import time

import trio

from storage import open_store
from storage.base import Recovery, StoreUnavailable
from storage.leases import Host, InstanceRow, dead_instances, instance_gone, keep_lease, orphaned, pid_alive

HERE = Host("box", "pid:[1]")


def instance(pid=None, host="box", namespace="pid:[1]", beat=1000.0, lease=30.0, id="i"):
    return InstanceRow(id, host, namespace, os.getpid() if pid is None else pid, beat, lease)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_who_is_gone():
    gone = dead_pid()
    assert not instance_gone(instance(), 1029.0, HERE)
    assert instance_gone(instance(), 1030.5, HERE)                        # the lease ran out
    assert instance_gone(instance(pid=gone), 1001.0, HERE)                # same host, its process is gone
    assert not instance_gone(instance(pid=gone, host="other"), 1001.0, HERE)    # another host: the lease decides
    assert not instance_gone(instance(pid=gone, namespace="pid:[2]"), 1001.0, HERE)  # another container
    assert not instance_gone(instance(pid=1), 1001.0, HERE)               # exists (PermissionError or ours)
    assert pid_alive(os.getpid()) and not pid_alive(gone)
    rows = [instance(id="me", beat=0), instance(id="old", beat=0), instance(id="ok")]
    assert dead_instances(rows, 1001.0, HERE, "me") == {"old"}
    assert orphaned(None, {"ok"}, "me") and orphaned("old", {"ok"}, "me") and orphaned("unknown", {"ok"}, "me")
    assert not orphaned("ok", {"ok"}, "me") and not orphaned("me", set(), "me")


async def test_keep_lease_registers_recovers_renews_and_sweeps(tmp_path, caplog):
    """Real time with a short lease (the store's worker threads and a mock clock's
    autojump do not mix)."""
    path = str(tmp_path / "lease.db")
    ghost = await open_store(path, instance_id="ghost", clock=lambda: time.time() - 3600)  # long dead
    await ghost.register_instance(30)
    await ghost.create_user("u")
    await ghost.credit("u", 1000, "credit")
    account = await ghost.get_account("u")
    await ghost.place_hold(account.id, 100, "r-ghost")
    await ghost.aclose()

    store = await open_store(path, instance_id="live")
    beats = []
    real_heartbeat = store.heartbeat

    async def heartbeat():
        beats.append(trio.current_time())
        if len(beats) == 2:
            raise StoreUnavailable("locked for a while")
        await real_heartbeat()

    store.heartbeat = heartbeat
    async with trio.open_nursery() as nursery:
        recovery = await nursery.start(keep_lease, store, 0.3)  # a beat every 0.1 s, a sweep every 0.3 s
        assert recovery == Recovery(released=1, instances_removed=1)
        late = await open_store(path, instance_id="late")
        await late.register_instance(30)
        await late.place_hold(account.id, 200, "r-late")
        await late.unregister_instance()                 # gone, with a hold open
        await late.aclose()                              # (virtual time runs on while threads work)
        with trio.fail_after(20):
            while (await store.get_account("u")).held:   # until a sweep comes round
                await trio.sleep(0.02)
            while len(beats) < 4:
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    assert all(later - earlier >= 0.099 for earlier, later in zip(beats, beats[1:]))
    assert any("locked for a while" in r.getMessage() for r in caplog.records)
    await store.aclose()
