"""Checkpoints of the streams in flight: the progress that lets a later recovery charge
what a killed process delivered. (The lease itself, and the sweep that recovers the
holds of owners that are gone, are storage.leases.keep_lease.)
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

from storage.base import Store, StoreError, UsageRow

log = logging.getLogger("cheaplm.instance")


class Relayed(Protocol):
    """A stream being relayed, as a checkpoint sees it (a metering Ticket)."""

    hold_id: int
    closed: bool

    def progress_mark(self) -> tuple | None: ...

    def checkpoint_row(self) -> UsageRow: ...

    def stop(self) -> None: ...


class InFlight:
    """The streams this process is relaying, for progress checkpoints."""

    def __init__(self) -> None:
        self._tickets: set[Relayed] = set()
        self._recorded: dict[int, tuple] = {}  # hold id -> the progress last written

    def add(self, ticket: Relayed) -> None:
        self._tickets.add(ticket)

    def discard(self, ticket: Relayed) -> None:
        self._tickets.discard(ticket)

    def __len__(self) -> int:
        return len(self._tickets)

    def stop_all(self) -> None:
        """This instance's lease was lost: stop every stream in flight at once."""
        for ticket in list(self._tickets):
            ticket.stop()

    def changed(self) -> list[tuple[int, object]]:
        """(hold id, the partial usage row to charge if this process dies now) for every
        stream whose progress moved since the last checkpoint."""
        items: list[tuple[int, object]] = []
        recorded: dict[int, tuple] = {}
        for ticket in list(self._tickets):
            mark = ticket.progress_mark()
            if mark is None or ticket.closed:
                continue
            recorded[ticket.hold_id] = mark
            if self._recorded.get(ticket.hold_id) != mark:
                items.append((ticket.hold_id, ticket.checkpoint_row()))
        self._recorded = recorded
        return items

    def forget_recorded(self) -> None:
        """A checkpoint failed: write every stream's progress again next time."""
        self._recorded = {}


async def checkpoint_progress(store: Store, in_flight: InFlight, interval: float) -> None:
    """Every ``interval`` seconds, one store transaction records the progress of every
    stream that moved: a kill -9 loses at most about that window of output."""
    while True:
        await trio.sleep(interval)
        items = in_flight.changed()
        if not items:
            continue
        try:
            await store.record_progress(items)
        except StoreError as exc:
            in_flight.forget_recorded()
            log.warning("progress checkpoint of %d stream(s) failed (will retry): %s", len(items), exc)
