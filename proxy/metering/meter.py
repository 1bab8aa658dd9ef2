"""The money side of a running gateway that every ticket uses: the store, the key
limiter, the nursery that owns what a request does after its response, the outcome
hook, the streams in flight and the count of holds not yet closed.

``open_ticket`` (ticket.py) admits a request here and places its hold; the ticket
closes both. Nothing outside metering/ moves these counters."""

from __future__ import annotations

from typing import Callable

import trio

from ..limits.base import KeyLimiter
from ..outcome import Outcome
from .checkpoints import InFlight
from .lease import LeaseWatch
from storage.base import Store

RETRY_PAUSES = (0.5, 1, 2, 4, 8, 15, 30, 30, 30, 30, 60, 60, 60, 60, 60, 60, 60, 60)  # about 10 minutes
RECLAIM_EVERY = 60.0  # then a hold whose close still fails is tried again this often, for as long as we live
GIVE_UP_SETTLING_AFTER = 3  # hard failures of a charge before its hold is released instead


class Meter:
    def __init__(self, store: Store, limiter: KeyLimiter, record: Callable[[Outcome], None],
                 after_response: trio.Nursery | None = None) -> None:
        self.store = store
        self.limiter = limiter
        self.record = record
        self.after_response = after_response
        self.in_flight = InFlight()
        self.holds_open = 0     # this process's requests whose outcome is not recorded yet
        self.closes_pending = 0  # holds whose close failed and is being retried in the background
        self.lease: LeaseWatch | None = None  # this instance's lease (serve.py); None: not guarded
        self.counted_holds = 0  # holds sized on the upstream's count of the prompt (the worst case was too much)

    def watch_lease(self, lease: LeaseWatch) -> None:
        """Guard the streams by this instance's lease: stop them all when it is lost."""
        self.lease = lease
        lease.on_lost = self.in_flight.stop_all
