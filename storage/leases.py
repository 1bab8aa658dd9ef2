"""Whether a hold's owner (a gateway instance) is gone, and the task that keeps an
instance's own lease alive. Backend-independent: every Store uses the same rule.

An owner is gone when its hold has no owner (a hold placed before owners were
recorded), when it has no instance row, when its lease ran out (heartbeat_at +
lease_seconds < now), or when it ran on this host, in this PID namespace, and its
process no longer exists. The PID check only speeds up what the lease decides
anyway; a recycled PID errs on the safe side (the owner looks alive until its lease
runs out).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import Callable

import trio

from .base import InstanceStore
from .errors import StoreError

log = logging.getLogger("cheaplm.storage")


@dataclass(frozen=True)
class Host:
    """Where this process runs: the host name and the PID namespace (two containers
    may share a host name but not their process ids)."""

    name: str
    pid_namespace: str | None

    @classmethod
    def this(cls) -> "Host":
        try:
            namespace: str | None = os.readlink("/proc/self/ns/pid")
        except OSError:
            namespace = None
        return cls(socket.gethostname(), namespace)


@dataclass(frozen=True)
class InstanceRow:
    id: str
    host: str
    pid_namespace: str | None
    pid: int
    heartbeat_at: float
    lease_seconds: float


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return True  # cannot tell: let the lease decide
    return True


def instance_gone(instance: InstanceRow, now: float, here: Host) -> bool:
    if instance.heartbeat_at + instance.lease_seconds < now:
        return True
    same_host = instance.host == here.name and instance.pid_namespace == here.pid_namespace
    return same_host and not pid_alive(instance.pid)


def dead_instances(instances: list[InstanceRow], now: float, here: Host, me: str | None) -> set[str]:
    """The ids of the instances that are gone (never ``me``)."""
    return {i.id for i in instances if i.id != me and instance_gone(i, now, here)}


def orphaned(owner: str | None, live: set[str], me: str | None) -> bool:
    """Whether a hold owned by ``owner`` is orphaned, given the ids of the live
    instances (``me``, the recovering instance, always counts as live)."""
    return owner is None or (owner != me and owner not in live)


async def keep_lease(store: InstanceStore, lease_seconds: float, *, sweep_every: float | None = None,
                     on_beat: Callable[[float, bool], None] | None = None,
                     task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Register this store's instance, recover the holds of dead instances, report
    started; then renew the lease every lease/3 seconds and sweep orphaned holds every
    ``sweep_every`` seconds (default: the lease) until cancelled. ``on_beat(at, renewed)``
    hears of each registration and renewal (``at``: trio's clock before it was asked;
    ``renewed`` False: the lease had been taken and this instance registered anew). A store that cannot
    be reached for a beat is logged and tried again at the next one; the instance
    row is removed by whoever ends this task (``unregister_instance``), not here."""
    at = trio.current_time()
    await store.register_instance(lease_seconds)
    if on_beat is not None:
        on_beat(at, True)
    recovery = await store.recover_orphaned_holds()
    _log_recovery(recovery)
    task_status.started(recovery)
    beat = lease_seconds / 3
    beats_per_sweep = max(1, round((lease_seconds if sweep_every is None else sweep_every) / beat))
    beats = 0
    while True:
        await trio.sleep(beat)
        beats += 1
        try:
            at = trio.current_time()
            renewed = await store.heartbeat()
            if on_beat is not None:
                on_beat(at, renewed)
            if beats % beats_per_sweep == 0:
                _log_recovery(await store.recover_orphaned_holds())
        except StoreError as exc:
            log.warning("instance lease: %s (trying again in %.1f s)", exc, beat)


def _log_recovery(recovery) -> None:
    if recovery.released or recovery.charged:
        log.warning("recovered holds of stopped instances: %d released, %d charged from their recorded "
                    "progress (%d micro-USD)", recovery.released, recovery.charged, recovery.charged_micro)
