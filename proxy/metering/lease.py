"""This instance's lease on its holds, as the relay sees it. Another instance recovers
the holds of an instance whose lease lapsed (storage.leases): a gateway paused past its
lease (SIGSTOP, a long GC, a frozen VM) wakes up with streams whose holds are gone. So
no stream relays output while the lease may have lapsed (``valid``) until a heartbeat
has confirmed it (``confirm``), and when the lease turns out taken every stream then in
flight is stopped at once with an error event (``lost``), charged for what its client
received (metering.ticket: the recovery's charge, and the rest late)."""

from __future__ import annotations

import logging
from typing import Callable

import trio

from storage.base import InstanceStore, StoreError

log = logging.getLogger("cheaplm.instance")


class LeaseWatch:
    def __init__(self, store: InstanceStore, lease_seconds: float) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self.until = float("-inf")  # trio's clock: the lease is ours until then at least
        self.on_lost: Callable[[], None] | None = None  # the meter's: stop the streams in flight
        self._confirming = trio.Lock()

    def beat(self, at: float, renewed: bool) -> None:
        """A registration or heartbeat asked at ``at`` (keep_lease's on_beat)."""
        self.until = max(self.until, at + self.lease_seconds)
        if not renewed:
            log.error("this instance's lease had lapsed and its holds were recovered by another instance: "
                      "stopping the streams in flight")
            if self.on_lost is not None:
                self.on_lost()

    def valid(self) -> bool:
        return trio.current_time() < self.until

    async def confirm(self) -> bool:
        """Whether the lease is (still, or again) this instance's own for the holds in flight:
        one heartbeat for every stream that asks at once. False when it had been taken (the
        streams in flight are stopped) or the ledger cannot say."""
        async with self._confirming:
            if self.valid():
                return True
            at = trio.current_time()
            try:
                renewed = await self.store.heartbeat()
            except StoreError as exc:
                log.warning("cannot confirm this instance's lease (%s): holding output back", exc)
                return False
            self.beat(at, renewed)
            return renewed
