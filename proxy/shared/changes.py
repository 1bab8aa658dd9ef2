"""Following the ledger's change feed (storage/sql/changes.py): a key revoked or changed,
an account disabled, enabled or out of its free tier, a channel override, made by any
process on the ledger (the CLI, the dashboard or JSON API of another node, another
worker), reaches this gateway within ``change_poll_interval`` (0.25 s), not when its key
cache expires (``key_cache_seconds``) or its next channel round comes
(``channel_sync_interval``).

One task per gateway reads the notices after the last it saw, one indexed range read,
and applies them: a key's cached record is forgotten, an account's every cached key, a
channel notice runs the channel sync at once. Why polling the store rather than
PostgreSQL's LISTEN/NOTIFY or Redis pub/sub: docs/deploy-a-fleet.md.

The ids of notices grow, but on PostgreSQL a transaction may commit its notice after
one with a higher id was read: a missing id is waited for (read again with the next
ones) up to ``GAP_SECONDS``, then given up, and the whole key cache forgotten, as it is
when the feed could not be read for a while (notices are pruned after an hour)."""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import trio

from ..auth import KeyCache
from storage.base import Change, ChangeStore, StoreError

log = logging.getLogger("cheaplm.changes")

POLL_SECONDS = 0.25
GAP_SECONDS = 10.0   # how long a missing notice id is waited for (a longer transaction's notice)
MAX_GAP = 10_000     # a jump of more ids than this (pruned while this process could not read) is given up at once
BATCH = 1000
START_BACK = 100     # notices before the newest that a starting follower reads (and waits for, when missing)


class Cursor:
    """Which notices were applied: every id up to ``upto`` (read, or missing for longer
    than ``wait`` seconds), and those read above it. Pure: ``now`` is given."""

    def __init__(self, upto: int, wait: float = GAP_SECONDS) -> None:
        self.upto = upto
        self.wait = wait
        self._seen: set[int] = set()            # read, above upto
        self._missing: dict[int, float] = {}    # not read, below a read one: since when

    @property
    def after(self) -> int:
        """The newest id read: new notices are read after it (those missing below it,
        after ``upto``)."""
        return max(self._seen, default=self.upto)

    def take(self, changes: Sequence[Change], now: float) -> tuple[list[Change], bool]:
        """Of ``changes`` (read after ``upto``), those not applied yet; and whether a
        missing id was given up (its change may have been missed)."""
        new = [c for c in changes if c.id > self.upto and c.id not in self._seen]
        gave_up = False
        for change in new:
            self._seen.add(change.id)
            self._missing.pop(change.id, None)
        top = max(self._seen, default=self.upto)
        if top - self.upto > MAX_GAP:
            gave_up, self.upto = True, top
            self._seen.clear()
            self._missing.clear()
            return new, gave_up
        for missing in range(self.upto + 1, top):
            if missing not in self._seen:
                self._missing.setdefault(missing, now)
        while True:
            following = self.upto + 1
            if following in self._seen:
                self._seen.discard(following)
            elif following in self._missing and now - self._missing[following] >= self.wait:
                del self._missing[following]
                gave_up = True
            else:
                return new, gave_up
            self.upto = following


def apply(changes: Sequence[Change], keys: KeyCache, channels_changed: Callable[[], None]) -> None:
    channels = False
    for change in changes:
        if change.kind == "key":
            keys.forget(change.name)
        elif change.kind == "account":
            if change.name.isdigit():
                keys.forget_account(int(change.name))
            else:  # (not a notice this version writes)
                keys.clear()
        elif change.kind == "channel":
            channels = True
    if channels:
        channels_changed()


async def follow_changes(store: ChangeStore, keys: KeyCache, channels_changed: Callable[[], None],
                         interval: float = POLL_SECONDS, *, clock: Callable[[], float] = trio.current_time,
                         task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Read the feed every ``interval`` s and apply what changed, until cancelled. Starts
    after the newest notice (the caches are empty then); a store that cannot be read is
    logged once, and when it can be again every cached key is forgotten and the channels
    synced (what changed meanwhile is not known). A full batch is followed by the next at
once: a flood of changes (thousands of keys revoked together) is not read 1000 per
``interval``."""
    cursor: Cursor | None = None
    failing = False
    while True:
        more = False  # a full batch that moved the cursor: a flood of changes, whose rest is read at once
        try:
            if cursor is None:
                # From a little before the newest notice: on PostgreSQL a change committing
                # now may hold a lower id than the newest one read; those below are waited for
                # as any missing id (applying a notice to empty caches is harmless).
                cursor = Cursor(max(await store.last_change() - START_BACK, 0))
            changes: Sequence[Change] = await store.changes_after(cursor.after, BATCH)
            if cursor.after > cursor.upto:  # (ids missing below the newest read: read again for late commits)
                changes = [*await store.changes_after(cursor.upto, min(BATCH, cursor.after - cursor.upto)),
                           *changes]
        except StoreError as exc:
            if not failing:
                log.warning("the change feed cannot be read (%s): changes made by other processes reach this "
                            "one within key_cache_seconds until it can", exc)
            failing = True
        else:
            new, gave_up = cursor.take(changes, clock())
            if failing or gave_up:
                log.info("the change feed: %s; every cached key is looked up again",
                         "readable again" if failing else "a change may have been missed")
                keys.clear()
                channels_changed()
                failing = False
            apply(new, keys, channels_changed)
            more = len(changes) >= BATCH and bool(new)
        task_status.started()
        task_status = trio.TASK_STATUS_IGNORED
        if not more:
            await trio.sleep(interval)
