"""The Store protocol: the small set of named operations the gateway needs.

Every implementation (SQLite now, PostgreSQL later) passes tests/test_store_contract.py.
All amounts are integer micro-USD; every balance change writes a ledger entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence


class StoreError(Exception):
    """Base of the storage errors the gateway maps to user-facing answers."""


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class InsufficientBalance(StoreError):
    def __init__(self, available: int, needed: int) -> None:
        super().__init__(f"available {available} micro-USD, needed {needed}")
        self.available = available
        self.needed = needed


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    balance: int
    held: int
    created_at: str

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass(frozen=True)
class KeyRecord:
    id: int
    account_id: int
    username: str
    prefix: str
    key_hash: str
    name: str
    models: tuple[str, ...] | None = None   # None: every model
    allow_stream: bool = True
    ips: tuple[str, ...] = ()               # empty: any address
    pass_thinking: bool | None = None       # None: the global setting
    created_at: str = ""
    last_used_at: str | None = None
    revoked_at: str | None = None


@dataclass(frozen=True)
class UsageRow:
    """One request's outcome, written when its hold is settled or released."""

    request_id: str
    key_id: int
    model: str
    endpoint: str
    stream: bool
    status: int
    input_tokens: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    output_tokens: int = 0
    cost: int = 0
    partial: bool = False
    error_type: str | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    created_at: str = field(default="")


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    account_id: int
    delta: int
    balance_after: int
    kind: str
    ref: str | None
    paid: int | None
    created_at: str


class Store(Protocol):
    async def create_user(self, username: str) -> Account: ...
    async def list_users(self) -> Sequence[Account]: ...
    async def get_account(self, username: str) -> Account: ...

    async def create_key(self, username: str, prefix: str, key_hash: str, name: str,
                         models: tuple[str, ...] | None, allow_stream: bool,
                         ips: tuple[str, ...], pass_thinking: bool | None) -> KeyRecord: ...
    async def list_keys(self, username: str) -> Sequence[KeyRecord]: ...
    async def find_key(self, prefix: str) -> KeyRecord | None: ...
    async def revoke_key(self, prefix: str) -> KeyRecord: ...

    async def credit(self, username: str, amount: int, kind: str, paid: int | None = None,
                     ref: str | None = None) -> Account: ...
    async def transfer(self, from_account_id: int, to_username: str, amount: int,
                       ref: str) -> tuple[Account, Account]: ...

    async def place_hold(self, account_id: int, amount: int, request_id: str) -> int: ...
    async def settle(self, hold_id: int, row: UsageRow) -> Account: ...
    async def release(self, hold_id: int, row: UsageRow | None) -> Account: ...
    async def recover_open_holds(self) -> int: ...

    async def usage(self, username: str, limit: int = 50) -> Sequence[UsageRow]: ...
    async def ledger(self, username: str) -> Sequence[LedgerEntry]: ...
    async def aclose(self) -> None: ...
