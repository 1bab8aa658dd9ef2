"""Upstream channels (every backend): the operator's overrides, and the channel status each
live gateway instance publishes (leases.py decides who is live)."""

from __future__ import annotations

import json
from typing import Sequence

from ..errors import StoreError
from ..leases import Host, InstanceRow, dead_instances
from ..records import ChannelOverride, ChannelSnapshot
from .ledger import Ledger
from .db import savepoint

_OVERRIDE_COLUMNS = "name, enabled, reason, set_at, version"


def _override(row: tuple) -> ChannelOverride:
    name, enabled, reason, set_at, version = row
    return ChannelOverride(name, bool(enabled), reason, set_at, version)


class Channels:
    """Run in the writer lane like the ledger's operations."""

    def __init__(self, ledger: Ledger, here: Host) -> None:
        self.ledger = ledger
        self.db = ledger.db
        self.here = here

    def set_channel_enabled(self, name: str, enabled: bool, reason: str) -> ChannelOverride:
        if not name:
            raise StoreError("a channel needs a name")
        with savepoint(self.db):
            row = self.db.execute(
                "INSERT INTO channel_overrides (name, enabled, reason, set_at, version) VALUES (?, ?, ?, ?, 1) "
                "ON CONFLICT (name) DO UPDATE SET enabled = excluded.enabled, reason = excluded.reason, "
                f"set_at = excluded.set_at, version = channel_overrides.version + 1 RETURNING {_OVERRIDE_COLUMNS}",
                (name, int(enabled), reason, self.ledger.clock())).fetchone()
            self.ledger.changed("channel", name)
        return _override(row)

    def channel_overrides(self) -> list[ChannelOverride]:
        return [_override(r) for r in self.db.execute(
            f"SELECT {_OVERRIDE_COLUMNS} FROM channel_overrides ORDER BY name")]

    def publish_channels(self, channels: Sequence[dict]) -> None:
        me = self.ledger.instance_id
        if me is None:
            raise StoreError("this store was opened without an instance id: it has no channels to publish")
        text = json.dumps(list(channels))
        with savepoint(self.db):
            self.db.execute("INSERT INTO channel_snapshots (instance_id, at, channels) VALUES (?, ?, ?) "
                            "ON CONFLICT (instance_id) DO UPDATE SET at = excluded.at, channels = excluded.channels",
                            (me, self.ledger.clock(), text))
            # Instances that stopped (or were recovered as dead) leave no snapshot behind.
            self.db.execute("DELETE FROM channel_snapshots WHERE instance_id NOT IN (SELECT id FROM instances) "
                            "AND instance_id != ?", (me,))

    def channel_status(self) -> list[ChannelSnapshot]:
        rows = self.db.execute(
            "SELECT i.id, i.host, i.pid_namespace, i.pid, i.heartbeat_at, i.lease_seconds, s.at, s.channels "
            "FROM channel_snapshots s JOIN instances i ON i.id = s.instance_id ORDER BY s.instance_id").fetchall()
        dead = dead_instances([InstanceRow(*r[:6]) for r in rows], self.ledger.clock(), self.here,
                              self.ledger.instance_id)
        return [ChannelSnapshot(r[0], r[6], tuple(json.loads(r[7]))) for r in rows if r[0] not in dead]
