"""The Store over SQL, whichever backend runs it: each method is one operation of
ops.py, handed to the backend's runner as a write (its own transaction, or SQLite's
group commit) or a read (a read snapshot, never under the write lock). A backend
subclasses ``SqlStore`` with its runner: storage/sqlite/store.py,
storage/postgres/store.py."""

from __future__ import annotations

from typing import Callable, Mapping, Sequence, TypeVar

from ..errors import StoreError
from ..records import (NO_LIMITS, Account, Change, ChannelOverride, ChannelSnapshot, KeyLimits, KeyRecord, LedgerEntry,
                       Recovery, StoreStats, UsageRow)
from ..records import CodeRecord, Payment, PaymentRecord, Profile, Session, TransferReceipt, UsageLine
from . import changes, checks
from .checks import Finding
from .ops import Ops

T = TypeVar("T")
Op = Callable[[Ops], T]


class SqlStore:
    """``_write(op)`` and ``_read(op)`` run ``op`` on some connection's Ops (the
    backend's); ``_findings``: the backend's own ``db check`` findings."""

    _findings: Sequence[Finding] = ()

    def __init__(self, instance_id: str | None) -> None:
        self.instance_id = instance_id
        self.applied_migrations: tuple[str, ...] = ()
        self._lease_seconds: float | None = None

    async def _write(self, op: Op[T]) -> T:
        raise NotImplementedError

    async def _read(self, op: Op[T], snapshot: bool = False) -> T:
        """``snapshot``: ``op``'s statements must all see one moment (``db check``);
        otherwise each statement is enough of one (a backend may give more)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def _after_copy(self, tables: Sequence[str]) -> None:
        """After rows were copied in with their ids (copy.py): what the backend needs to
        go on numbering after them (PostgreSQL: its identity sequences)."""

    async def create_user(self, username: str) -> Account:
        return await self._write(lambda o: o.ledger.create_user(username))

    async def list_users(self) -> Sequence[Account]:
        return await self._read(lambda o: o.ledger.list_users())

    async def get_account(self, username: str) -> Account:
        return await self._read(lambda o: o.ledger.get_account(username))

    async def create_key(self, username: str, prefix: str, key_hash: str, name: str,
                         models: tuple[str, ...] | None, allow_stream: bool,
                         ips: tuple[str, ...], pass_thinking: bool | None,
                         limits: KeyLimits = NO_LIMITS) -> KeyRecord:
        return await self._write(lambda o: o.ledger.create_key(username, prefix, key_hash, name, models,
                                    allow_stream, ips, pass_thinking, limits))

    async def set_key_limits(self, prefix: str, changes: Mapping[str, int | None]) -> KeyRecord:
        limits = dict(changes)
        return await self._write(lambda o: o.ledger.set_key_limits(prefix, limits))

    async def list_keys(self, username: str) -> Sequence[KeyRecord]:
        return await self._read(lambda o: o.ledger.list_keys(username))

    async def find_key(self, prefix: str) -> KeyRecord | None:
        return await self._read(lambda o: o.ledger.find_key(prefix))

    async def revoke_key(self, prefix: str) -> KeyRecord:
        return await self._write(lambda o: o.ledger.revoke_key(prefix))

    async def credit(self, username: str, amount: int, kind: str, paid: int | None = None,
                     ref: str | None = None, reason: str | None = None, actor: str | None = None) -> Account:
        return await self._write(lambda o: o.ledger.credit(username, amount, kind, paid, ref, reason, actor))

    async def debit(self, username: str, amount: int, kind: str, reason: str | None = None,
                    actor: str | None = None) -> Account:
        return await self._write(lambda o: o.ledger.debit(username, amount, kind, reason, actor))

    async def transfer(self, from_account_id: int, to_username: str, amount: int,
                       ref: str, key_id: int | None = None) -> tuple[Account, Account]:
        return await self._write(lambda o: o.ledger.transfer(from_account_id, to_username, amount, ref, key_id))

    async def transfer_once(self, from_account_id: int, to_username: str, amount: int, ref: str,
                            key_id: int | None, idempotency_key: str, request_hash: str) -> TransferReceipt:
        return await self._write(lambda o: o.transfers.transfer_once(from_account_id, to_username, amount, ref,
                                                                     key_id, idempotency_key, request_hash))

    async def charge_recovered(self, hold_id: int, row: UsageRow) -> int:
        return await self._write(lambda o: o.late.charge_recovered(hold_id, row))

    async def register_instance(self, lease_seconds: float) -> None:
        await self._write(lambda o: o.owners.register_instance(lease_seconds))
        self._lease_seconds = lease_seconds

    async def heartbeat(self) -> bool:
        lease_seconds = self._lease_seconds
        return await self._write(lambda o: o.owners.heartbeat(lease_seconds))

    async def unregister_instance(self) -> None:
        await self._write(lambda o: o.owners.unregister_instance())
        self._lease_seconds = None

    async def place_hold(self, account_id: int, amount: int, request_id: str, key_id: int | None = None) -> int:
        if self.instance_id is None:
            raise StoreError("this store was opened without an instance id: it may not place holds")
        return await self._write(lambda o: o.ledger.place_hold(account_id, amount, request_id, key_id))

    async def extend_hold(self, hold_id: int, extra: int) -> None:
        await self._write(lambda o: o.ledger.extend_hold(hold_id, extra))

    async def settle(self, hold_id: int, row: UsageRow) -> Account:
        return await self._write(lambda o: o.ledger.settle(hold_id, row))

    async def release(self, hold_id: int, row: UsageRow | None) -> Account:
        return await self._write(lambda o: o.ledger.release(hold_id, row))

    async def record_progress(self, items: Sequence[tuple[int, UsageRow]]) -> None:
        batch = list(items)
        if batch:
            await self._write(lambda o: o.owners.record_progress(batch))

    async def recover_orphaned_holds(self) -> Recovery:
        total = Recovery()
        more = True
        while more:
            done, more = await self._write(lambda o: o.owners.recover_batch())
            total += done
        return total

    async def usage(self, username: str, limit: int = 50) -> Sequence[UsageRow]:
        return await self._read(lambda o: o.ledger.usage(username, limit))

    async def set_channel_enabled(self, name: str, enabled: bool, reason: str) -> ChannelOverride:
        return await self._write(lambda o: o.channels.set_channel_enabled(name, enabled, reason))

    async def channel_overrides(self) -> Sequence[ChannelOverride]:
        return await self._read(lambda o: o.channels.channel_overrides())

    async def publish_channels(self, channels: Sequence[dict]) -> None:
        rows = list(channels)
        await self._write(lambda o: o.channels.publish_channels(rows))

    async def channel_status(self) -> Sequence[ChannelSnapshot]:
        return await self._read(lambda o: o.channels.channel_status())

    async def changes_after(self, last: int, limit: int = 1000) -> Sequence[Change]:
        return await self._read(lambda o: changes.after(o.db, last, limit))

    async def last_change(self) -> int:
        return await self._read(lambda o: changes.last(o.db))

    async def ledger(self, username: str) -> Sequence[LedgerEntry]:
        return await self._read(lambda o: o.ledger.ledger(username))

    # -- accounts, sessions, codes, reports (accounts.py) ----------------------------
    async def create_profile(self, username: str, password_hash: str | None, email: str | None, role: str,
                             credit: int = 0) -> Profile:
        return await self._write(lambda o: o.accounts.create_profile(username, password_hash, email, role, credit))

    async def get_profile(self, username: str) -> Profile:
        return await self._read(lambda o: o.accounts.get_profile(username))

    async def list_profiles(self) -> Sequence[tuple[Profile, Account]]:
        return await self._read(lambda o: o.accounts.list_profiles())

    async def set_password(self, username: str, password_hash: str) -> Profile:
        return await self._write(lambda o: o.accounts.set_password(username, password_hash))

    async def set_disabled(self, username: str, disabled: bool) -> Profile:
        return await self._write(lambda o: o.accounts.set_disabled(username, disabled))

    async def set_key_expiry(self, prefix: str, expires_at: float | None) -> KeyRecord:
        return await self._write(lambda o: o.accounts.set_key_expiry(prefix, expires_at))

    async def create_session(self, account_id: int, token_hash: str, expires_at: float,
                             keep: int | None = None) -> Session:
        return await self._write(lambda o: o.accounts.create_session(account_id, token_hash, expires_at, keep))

    async def find_session(self, token_hash: str) -> Session | None:
        return await self._read(lambda o: o.accounts.find_session(token_hash))

    async def end_session(self, token_hash: str) -> None:
        await self._write(lambda o: o.accounts.end_session(token_hash))

    async def create_codes(self, codes: Sequence[tuple[str, str]], paid: int, credit: int,
                           expires_at: float | None) -> Sequence[CodeRecord]:
        batch = list(codes)
        return await self._write(lambda o: o.accounts.create_codes(batch, paid, credit, expires_at))

    async def list_codes(self) -> Sequence[CodeRecord]:
        return await self._read(lambda o: o.accounts.list_codes())

    async def redeem_code(self, code_hash: str, username: str) -> tuple[CodeRecord, Account]:
        return await self._write(lambda o: o.accounts.redeem_code(code_hash, username))

    async def apply_payment(self, payment: Payment) -> tuple[Account, bool]:
        return await self._write(lambda o: o.accounts.apply_payment(payment))

    async def find_payment(self, provider: str, ref: str) -> PaymentRecord | None:
        return await self._read(lambda o: o.payments.find_payment(provider, ref))

    async def refund_payment(self, provider: str, event_id: str, refunded: int,
                             take_back: int) -> tuple[PaymentRecord, Account, int, int]:
        return await self._write(lambda o: o.payments.refund_payment(provider, event_id, refunded, take_back))

    async def usage_page(self, username: str | None, limit: int, before: str | None = None,
                         key_prefix: str | None = None, model: str | None = None, since: float | None = None,
                         until: float | None = None) -> Sequence[UsageLine]:
        return await self._read(lambda o: o.accounts.usage_page(username, limit, before, key_prefix, model,
                                                                since, until))

    async def ledger_page(self, username: str, limit: int, before: int | None = None) -> Sequence[LedgerEntry]:
        return await self._read(lambda o: o.accounts.ledger_page(username, limit, before))

    async def paid_total(self, username: str) -> int:
        return await self._read(lambda o: o.accounts.paid_total(username))

    async def spend_by_day(self, username: str, since: str) -> Sequence[tuple[str, int]]:
        return await self._read(lambda o: o.accounts.spend_by_day(username, since))

    async def check(self) -> list[str]:
        return await self._read(lambda o: checks.check(o.db, self._findings), snapshot=True)

    async def stats(self) -> StoreStats:
        return await self._read(lambda o: checks.stats(o.db))
