"""Hold ownership (every backend): the instances table (leases), progress checkpoints of
in-flight holds, and the recovery of holds whose owner is gone (leases.py decides who
is gone)."""

from __future__ import annotations

import json
import logging
import operator
import os
from dataclasses import replace
from typing import Sequence

import orjson

from ..errors import StoreError
from ..records import Recovery, UsageRow, checked_amount
from ..leases import Host, InstanceRow, dead_instances, orphaned
from .ledger import USAGE_COLUMNS, Ledger
from .db import savepoint

log = logging.getLogger("cheaplm.storage")

RECOVERY_BATCH = 500  # orphaned holds closed per transaction

# A checkpoint is the UsageRow as a JSON object, written by orjson from the gathered
# values (attrgetter, in C): a batch of a thousand costs about a millisecond of GIL, not
# the tens of milliseconds json.dumps would, and the statement is plain SQL every
# backend runs (SQLite's json_object was as fast but SQLite's own).
_PROGRESS_FIELDS = tuple(c for c in USAGE_COLUMNS if c != "created_at")
_progress_values = operator.attrgetter(*_PROGRESS_FIELDS)
_RECORD_PROGRESS = "UPDATE holds SET progress = ?, progress_at = ? WHERE id = ? AND state = 'open'"


def encode_progress(row: UsageRow) -> str:
    return orjson.dumps(dict(zip(_PROGRESS_FIELDS, _progress_values(row)))).decode()


def decode_progress(text: str) -> UsageRow:
    data = {k: v for k, v in json.loads(text).items() if k in _PROGRESS_FIELDS}
    return UsageRow(**{**data, "stream": bool(data.get("stream")), "partial": bool(data.get("partial"))})


class Owners:
    """The lease and recovery operations, run like the ledger's. The lease this instance
    registered with is the store's to remember (connections come and go)."""

    def __init__(self, ledger: Ledger, here: Host | None = None) -> None:
        self.ledger = ledger
        self.db = ledger.db
        self.here = here or Host.this()

    def _me(self) -> str:
        if self.ledger.instance_id is None:
            raise StoreError("this store was opened without an instance id")
        return self.ledger.instance_id

    # -- instances ----------------------------------------------------------------------
    def register_instance(self, lease_seconds: float) -> None:
        if not lease_seconds > 0:
            raise StoreError("lease_seconds must be positive")
        me = self._me()
        with savepoint(self.db):
            self._insert_instance(me, lease_seconds)

    def _insert_instance(self, me: str, lease_seconds: float) -> None:
        now = self.ledger.clock()
        self.db.execute("DELETE FROM instances WHERE id = ?", (me,))
        self.db.execute(
            "INSERT INTO instances (id, host, pid_namespace, pid, started_at, heartbeat_at, lease_seconds) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (me, self.here.name, self.here.pid_namespace, os.getpid(), now, now, float(lease_seconds)))

    def heartbeat(self, lease_seconds: float | None) -> bool:
        """Renew this instance's lease (``lease_seconds``: what it registered with); False
        when its row was gone (taken for dead: its holds may have been recovered)."""
        me = self._me()
        if lease_seconds is None:
            raise StoreError("heartbeat before register_instance")
        with savepoint(self.db):
            renewed = self.db.execute("UPDATE instances SET heartbeat_at = ? WHERE id = ?",
                                      (self.ledger.clock(), me)).rowcount
            if not renewed:
                log.warning("instance %s had been taken for dead (its row was removed): registering it again; "
                            "holds it had open may have been released or charged meanwhile", me)
                self._insert_instance(me, lease_seconds)
        return bool(renewed)

    def unregister_instance(self) -> None:
        me = self._me()
        with savepoint(self.db):
            self.db.execute("DELETE FROM instances WHERE id = ?", (me,))

    # -- progress ------------------------------------------------------------------------
    def record_progress(self, items: Sequence[tuple[int, UsageRow]]) -> None:
        """Store each hold's partial charge (applied if its owner dies), for the holds
        still open; one statement run for the whole batch."""
        for _, row in items:
            checked_amount(row.cost, "progress cost", allow_zero=True)
        at = self.ledger.clock()
        with savepoint(self.db):
            self.db.executemany(_RECORD_PROGRESS, [(encode_progress(row), at, hold_id)
                                                        for hold_id, row in items])

    # -- recovery -------------------------------------------------------------------------
    def recover_batch(self) -> tuple[Recovery, bool]:
        """One transaction's share of the recovery: decide who is gone, delete their
        instance rows, and close up to RECOVERY_BATCH of the holds they left open.
        Returns (what was done, whether more orphaned holds may remain)."""
        me = self.ledger.instance_id
        with savepoint(self.db):
            instances = [InstanceRow(*r) for r in self.db.execute(
                "SELECT id, host, pid_namespace, pid, heartbeat_at, lease_seconds FROM instances")]
            dead = dead_instances(instances, self.ledger.clock(), self.here, me)
            live = {i.id for i in instances} - dead
            for instance_id in dead:
                self.db.execute("DELETE FROM instances WHERE id = ?", (instance_id,))
            holds = [h for h in self.db.execute(
                "SELECT id, owner, progress FROM holds WHERE state = 'open' ORDER BY id").fetchall()
                if orphaned(h[1], live, me)]
            recovery = Recovery(instances_removed=len(dead))
            for hold_id, _owner, progress in holds[:RECOVERY_BATCH]:
                recovery += self._recover_hold(hold_id, progress)
        return recovery, len(holds) > RECOVERY_BATCH

    def _recover_hold(self, hold_id: int, progress: str | None) -> Recovery:
        try:
            row = decode_progress(progress) if progress else None
        except (ValueError, TypeError) as exc:
            log.error("orphaned hold %s: its recorded progress is unreadable (%s); releasing it", hold_id, exc)
            row = None
        if row is not None and row.cost > 0:
            try:
                with savepoint(self.db):
                    closed = self.ledger.close_hold(hold_id, "settled_on_recovery")
                    if closed is None:
                        return Recovery()  # another recoverer closed it first
                    account_id, amount = closed
                    self.ledger.change_balance(account_id, -row.cost, "charge", row.request_id, release=amount)
                    self.ledger.write_usage(account_id, replace(row, partial=True))
                return Recovery(charged=1, charged_micro=row.cost)
            except (StoreError, self.db.IntegrityError) as exc:
                # out of range, or a usage row already there: the hold must not stay open for it
                log.error("orphaned hold %s: its recorded charge cannot be applied (%s); releasing it", hold_id, exc)
        with savepoint(self.db):
            closed = self.ledger.close_hold(hold_id, "released_on_recovery")
            if closed is None:
                return Recovery()
            account_id, amount = closed
            self.ledger.change_balance(account_id, 0, "release", None, release=amount)
        return Recovery(released=1)

