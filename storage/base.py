"""The Store protocol: the small set of named operations the gateway needs.

Every implementation (SQLite now, PostgreSQL later) passes tests/test_store_contract.py.
All amounts are integer micro-USD; every balance change writes a ledger entry.

Holds are owned: a store opened with an instance id registers that instance with a
lease (``register_instance``, renewed by ``heartbeat``) and every hold it places
records it as owner. ``recover_orphaned_holds`` closes only the holds whose owner is
gone, so any number of gateway processes can share one ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

MAX_AMOUNT = 10**15   # micro-USD ($1e9): the largest single credit, transfer, hold or charge
MAX_BALANCE = 10**17  # micro-USD: the largest |balance| (and held); int64 tops out at ~9.2e18


class StoreError(Exception):
    """Base of the storage errors the gateway maps to user-facing answers."""


class StoreUnavailable(StoreError):
    """The store cannot serve right now (write lock not had within the busy timeout,
    read-only or full disk, I/O error, unopenable file). Nothing was applied; the
    caller may answer 503 with ``Retry-After: retry_after``."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AmountOutOfRange(StoreError):
    """An amount that is not an int in range, or a change that would leave a balance
    beyond MAX_BALANCE. Nothing was applied."""


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class InsufficientBalance(StoreError):
    def __init__(self, available: int, needed: int) -> None:
        super().__init__(f"available {available} micro-USD, needed {needed}")
        self.available = available
        self.needed = needed


def checked_amount(value: object, what: str, *, allow_zero: bool = False) -> int:
    """``value`` if it is an int (not a bool) with 0 < value <= MAX_AMOUNT (0 allowed
    with ``allow_zero``); AmountOutOfRange otherwise."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise AmountOutOfRange(f"{what} must be an integer number of micro-USD, not {type(value).__name__}")
    if not (0 if allow_zero else 1) <= value <= MAX_AMOUNT:
        raise AmountOutOfRange(f"{what} {value} micro-USD is out of range "
                               f"({0 if allow_zero else 1}..{MAX_AMOUNT})")
    return value


def checked_balance(balance: int, account: object) -> int:
    """``balance`` if |balance| <= MAX_BALANCE; AmountOutOfRange otherwise (raised
    inside the transaction, which then applies nothing)."""
    if not -MAX_BALANCE <= balance <= MAX_BALANCE:
        raise AmountOutOfRange(f"account {account}: the balance would leave the range +-{MAX_BALANCE} micro-USD")
    return balance


@dataclass(frozen=True)
class Recovery:
    """What one ``recover_orphaned_holds`` did."""

    released: int = 0           # orphaned holds released (nothing charged)
    charged: int = 0            # orphaned holds settled from their recorded progress
    charged_micro: int = 0      # the sum those charges took
    instances_removed: int = 0  # dead instances' rows deleted

    def __add__(self, other: "Recovery") -> "Recovery":
        return Recovery(self.released + other.released, self.charged + other.charged,
                        self.charged_micro + other.charged_micro, self.instances_removed + other.instances_removed)


@dataclass(frozen=True)
class StoreStats:
    accounts: int
    ledger_entries: int
    open_holds: int


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

    # Instances and their leases. A store opened without an instance id (the admin CLI)
    # may not call these nor place holds.
    async def register_instance(self, lease_seconds: float) -> None:
        """Insert (or replace) this instance's row: host, pid, now as start and heartbeat."""
    async def heartbeat(self) -> None:
        """Renew the lease; re-register (with a warning logged) if someone took this
        instance for dead and removed its row."""
    async def unregister_instance(self) -> None:
        """Remove this instance's row: any hold it still has open is orphaned from now on."""

    # Holds. Amounts: int, 0 < amount <= MAX_AMOUNT (a charge may be 0); a change that
    # would leave |balance| > MAX_BALANCE raises AmountOutOfRange and applies nothing.
    async def place_hold(self, account_id: int, amount: int, request_id: str) -> int:
        """Hold ``amount`` of the available balance, owned by this instance."""
    async def extend_hold(self, hold_id: int, extra: int) -> None:
        """Grow an open hold by ``extra`` (InsufficientBalance when the available balance
        cannot cover it; nothing changes then)."""
    async def settle(self, hold_id: int, row: UsageRow) -> Account:
        """Close an open hold: charge ``row.cost`` (a 'charge' ledger entry, ref = the
        request id) and write its usage row. NotFound if the hold is not open."""
    async def release(self, hold_id: int, row: UsageRow | None) -> Account:
        """Close an open hold charging nothing (``row``, if given, must cost 0)."""
    async def record_progress(self, items: Sequence[tuple[int, UsageRow]]) -> None:
        """Checkpoint in-flight holds, one transaction for the batch: for each (hold id,
        row) still open, remember ``row`` as the partial charge to apply if the owner dies
        (cost computed, status/error_type set by the caller). Closed holds are skipped."""
    async def recover_orphaned_holds(self) -> Recovery:
        """Close the open holds whose owner is gone (leases.py): settle those with a
        recorded progress of cost > 0 from it (partial=True), release the others; delete
        the dead instances' rows. Never touches a live owner's holds (this instance's
        included). Safe to run from several processes at once: each hold closes once."""

    async def usage(self, username: str, limit: int = 50) -> Sequence[UsageRow]: ...
    async def ledger(self, username: str) -> Sequence[LedgerEntry]: ...
    async def check(self) -> list[str]:
        """The ledger's broken invariants, one line each (empty: all hold)."""
    async def stats(self) -> StoreStats: ...
    async def aclose(self) -> None: ...
