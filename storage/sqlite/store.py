"""The async SQLite Store: each call runs its synchronous operation (ledger.py,
owners.py, channels.py, checks.py) through the one writer lane's thread (lane.py); key lookups run
on the event loop, on a read-only connection (reader.py)."""

from __future__ import annotations

import time
from typing import Callable, Mapping, Sequence

import trio

from ..errors import StoreError
from ..location import MEMORY
from ..records import (NO_LIMITS, Account, ChannelOverride, ChannelSnapshot, KeyLimits, KeyRecord, LedgerEntry,
                       Recovery, StoreStats, UsageRow)
from ..records import CodeRecord, Payment, Profile, Session, TransferReceipt, UsageLine
from .accounts import SqliteAccounts
from . import checks
from .channels import SqliteChannels
from .connection import connect, connect_reader
from .lane import WriterLane
from .ledger import SqliteLedger
from .owners import SqliteOwners
from .late import SqliteLateCharges
from .transfers import SqliteTransfers
from .reader import LoopReader


class SqliteStore:
    """``ledger``: the operations on the writer connection (run in the lane);
    ``looked_up``: the same on the loop's read-only connection (reads only)."""

    def __init__(self, lane: WriterLane, ledger: SqliteLedger, owners: SqliteOwners, reader: LoopReader,
                 looked_up: SqliteLedger) -> None:
        self._lane = lane
        self._ledger = ledger
        self._owners = owners
        self._channels = SqliteChannels(ledger, owners.here)
        self._accounts = SqliteAccounts(ledger)
        self._transfers = SqliteTransfers(ledger)
        self._late = SqliteLateCharges(ledger)
        self._reader = reader
        self._looked_up = looked_up

    @classmethod
    async def open(cls, path: str, *, instance_id: str | None = None, busy_timeout: float = 5.0,
                   clock: Callable[[], float] = time.time) -> "SqliteStore":
        db = await trio.to_thread.run_sync(connect, path, busy_timeout)
        try:
            loop_db = None if path == MEMORY else await trio.to_thread.run_sync(connect_reader, path)
        except BaseException:
            await trio.to_thread.run_sync(db.close)
            raise
        ledger = SqliteLedger(db, instance_id, clock)
        lane = WriterLane(db, busy_timeout)
        looked_up = ledger if loop_db is None else SqliteLedger(loop_db, instance_id, clock)
        return cls(lane, ledger, SqliteOwners(ledger), LoopReader(loop_db, lane), looked_up)

    @property
    def instance_id(self) -> str | None:
        return self._ledger.instance_id

    async def create_user(self, username: str) -> Account:
        return await self._lane.run(self._ledger.create_user, username)

    async def list_users(self) -> Sequence[Account]:
        return await self._lane.run(self._ledger.list_users)

    async def get_account(self, username: str) -> Account:
        return await self._lane.run(self._ledger.get_account, username)

    async def create_key(self, username: str, prefix: str, key_hash: str, name: str,
                         models: tuple[str, ...] | None, allow_stream: bool,
                         ips: tuple[str, ...], pass_thinking: bool | None,
                         limits: KeyLimits = NO_LIMITS) -> KeyRecord:
        return await self._lane.run(self._ledger.create_key, username, prefix, key_hash, name, models,
                                    allow_stream, ips, pass_thinking, limits)

    async def set_key_limits(self, prefix: str, changes: Mapping[str, int | None]) -> KeyRecord:
        return await self._lane.run(self._ledger.set_key_limits, prefix, dict(changes))

    async def list_keys(self, username: str) -> Sequence[KeyRecord]:
        return await self._lane.run(self._ledger.list_keys, username)

    async def find_key(self, prefix: str) -> KeyRecord | None:
        return await self._reader.run(self._looked_up.find_key, self._ledger.find_key, prefix)

    async def revoke_key(self, prefix: str) -> KeyRecord:
        return await self._lane.run(self._ledger.revoke_key, prefix)

    async def credit(self, username: str, amount: int, kind: str, paid: int | None = None,
                     ref: str | None = None) -> Account:
        return await self._lane.run(self._ledger.credit, username, amount, kind, paid, ref)

    async def transfer(self, from_account_id: int, to_username: str, amount: int,
                       ref: str, key_id: int | None = None) -> tuple[Account, Account]:
        return await self._lane.run(self._ledger.transfer, from_account_id, to_username, amount, ref, key_id)

    async def transfer_once(self, from_account_id: int, to_username: str, amount: int, ref: str,
                            key_id: int | None, idempotency_key: str, request_hash: str) -> TransferReceipt:
        return await self._lane.run(self._transfers.transfer_once, from_account_id, to_username, amount, ref,
                                    key_id, idempotency_key, request_hash)

    async def register_instance(self, lease_seconds: float) -> None:
        await self._lane.run(self._owners.register_instance, lease_seconds)

    async def heartbeat(self) -> bool:
        return await self._lane.run(self._owners.heartbeat)

    async def unregister_instance(self) -> None:
        await self._lane.run(self._owners.unregister_instance)

    async def place_hold(self, account_id: int, amount: int, request_id: str, key_id: int | None = None) -> int:
        if self._ledger.instance_id is None:
            raise StoreError("this store was opened without an instance id: it may not place holds")
        return await self._lane.run(self._ledger.place_hold, account_id, amount, request_id, key_id)

    async def extend_hold(self, hold_id: int, extra: int) -> None:
        await self._lane.run(self._ledger.extend_hold, hold_id, extra)

    async def charge_recovered(self, hold_id: int, row: UsageRow) -> int:
        return await self._lane.run(self._late.charge_recovered, hold_id, row)

    async def settle(self, hold_id: int, row: UsageRow) -> Account:
        return await self._lane.run(self._ledger.settle, hold_id, row)

    async def release(self, hold_id: int, row: UsageRow | None) -> Account:
        return await self._lane.run(self._ledger.release, hold_id, row)

    async def record_progress(self, items: Sequence[tuple[int, UsageRow]]) -> None:
        if items:
            await self._lane.run(self._owners.record_progress, list(items))

    async def recover_orphaned_holds(self) -> Recovery:
        total = Recovery()
        more = True
        while more:
            done, more = await self._lane.run(self._owners.recover_batch)
            total += done
        return total

    async def usage(self, username: str, limit: int = 50) -> Sequence[UsageRow]:
        return await self._lane.run(self._ledger.usage, username, limit)

    async def set_channel_enabled(self, name: str, enabled: bool, reason: str) -> ChannelOverride:
        return await self._lane.run(self._channels.set_channel_enabled, name, enabled, reason)

    async def channel_overrides(self) -> Sequence[ChannelOverride]:
        return await self._lane.run(self._channels.channel_overrides)

    async def publish_channels(self, channels: Sequence[dict]) -> None:
        await self._lane.run(self._channels.publish_channels, list(channels))

    async def channel_status(self) -> Sequence[ChannelSnapshot]:
        return await self._lane.run(self._channels.channel_status)

    async def ledger(self, username: str) -> Sequence[LedgerEntry]:
        return await self._lane.run(self._ledger.ledger, username)

    # -- accounts, sessions, codes, reports (accounts.py) ----------------------------
    async def create_profile(self, username: str, password_hash: str | None, email: str | None, role: str,
                             credit: int = 0) -> Profile:
        return await self._lane.run(self._accounts.create_profile, username, password_hash, email, role, credit)

    async def get_profile(self, username: str) -> Profile:
        return await self._lane.run(self._accounts.get_profile, username)

    async def list_profiles(self) -> Sequence[tuple[Profile, Account]]:
        return await self._lane.run(self._accounts.list_profiles)

    async def set_password(self, username: str, password_hash: str) -> Profile:
        return await self._lane.run(self._accounts.set_password, username, password_hash)

    async def set_disabled(self, username: str, disabled: bool) -> Profile:
        return await self._lane.run(self._accounts.set_disabled, username, disabled)

    async def set_key_expiry(self, prefix: str, expires_at: float | None) -> KeyRecord:
        return await self._lane.run(self._accounts.set_key_expiry, prefix, expires_at)

    async def create_session(self, account_id: int, token_hash: str, expires_at: float) -> Session:
        return await self._lane.run(self._accounts.create_session, account_id, token_hash, expires_at)

    async def find_session(self, token_hash: str) -> Session | None:
        return await self._lane.run(self._accounts.find_session, token_hash)

    async def end_session(self, token_hash: str) -> None:
        await self._lane.run(self._accounts.end_session, token_hash)

    async def create_codes(self, codes: Sequence[tuple[str, str]], paid: int, credit: int,
                           expires_at: float | None) -> Sequence[CodeRecord]:
        return await self._lane.run(self._accounts.create_codes, list(codes), paid, credit, expires_at)

    async def list_codes(self) -> Sequence[CodeRecord]:
        return await self._lane.run(self._accounts.list_codes)

    async def redeem_code(self, code_hash: str, username: str) -> tuple[CodeRecord, Account]:
        return await self._lane.run(self._accounts.redeem_code, code_hash, username)

    async def apply_payment(self, payment: Payment) -> tuple[Account, bool]:
        return await self._lane.run(self._accounts.apply_payment, payment)

    async def usage_page(self, username: str | None, limit: int, before: str | None = None,
                         key_prefix: str | None = None, model: str | None = None) -> Sequence[UsageLine]:
        return await self._lane.run(self._accounts.usage_page, username, limit, before, key_prefix, model)

    async def ledger_page(self, username: str, limit: int, before: int | None = None) -> Sequence[LedgerEntry]:
        return await self._lane.run(self._accounts.ledger_page, username, limit, before)

    async def paid_total(self, username: str) -> int:
        return await self._lane.run(self._accounts.paid_total, username)

    async def spend_by_day(self, username: str, since: str) -> Sequence[tuple[str, int]]:
        return await self._lane.run(self._accounts.spend_by_day, username, since)

    async def check(self) -> list[str]:
        return await self._lane.run(checks.check, self._ledger.db.conn, reads_only=True)

    async def stats(self) -> StoreStats:
        return await self._lane.run(checks.stats, self._ledger.db.conn, reads_only=True)

    async def aclose(self) -> None:
        try:
            await trio.to_thread.run_sync(self._reader.close)
        finally:
            await self._lane.aclose()
