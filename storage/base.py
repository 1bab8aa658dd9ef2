"""The Store protocols: the small named operations the gateway needs, split by concern,
so that a caller can ask for (and a test fake can provide) only the part it uses.

Every backend (SQLite, PostgreSQL) implements ``Store``, the union of them,
and passes tests/storage/test_contract.py. All amounts are integer micro-USD; every
balance change writes a ledger entry.

Holds are owned: a store opened with an instance id registers that instance with a
lease (``register_instance``, renewed by ``heartbeat``) and every hold it places
records it as owner. ``recover_orphaned_holds`` closes only the holds whose owner is
gone, so any number of gateway processes can share one ledger.

The errors (errors.py) and records (records.py) are re-exported here: ``from
storage.base import Store, StoreError, Account`` keeps working for every caller.
"""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence

from .errors import (AlreadyExists, AmountOutOfRange, InsufficientBalance, LedgerMissing, MigrationNeeded,
                     NotFound, SchemaTooNew, SpendCapReached, StoreBusy, StoreConfigError, StoreError,
                     StoreUnavailable)
from .errors import CodeRefused, IdempotencyConflict
from .records import (LIMIT_FIELDS, MAX_AMOUNT, MAX_BALANCE, MAX_RATE, NO_LIMITS, Account, ChannelOverride,
                      ChannelSnapshot, KeyLimits, KeyRecord, LedgerEntry, Recovery, StoreStats, UsageRow,
                      checked_amount, checked_balance)
from .records import CHANGE_KINDS, Change
from .records import ROLES, CodeRecord, Payment, PaymentRecord, Profile, Session, TransferReceipt, UsageLine

__all__ = [
    "KeyStore", "LedgerStore", "HoldStore", "UsageStore", "InstanceStore", "ChannelStore", "ChangeStore",
    "MaintenanceStore", "Change", "CHANGE_KINDS",
    "Store",
    "StoreError", "StoreUnavailable", "StoreBusy", "StoreConfigError", "LedgerMissing", "MigrationNeeded",
    "SchemaTooNew", "AmountOutOfRange", "NotFound", "AlreadyExists",
    "InsufficientBalance", "SpendCapReached", "MAX_AMOUNT", "MAX_BALANCE", "MAX_RATE", "checked_amount",
    "checked_balance", "Account", "ChannelOverride", "ChannelSnapshot", "KeyLimits", "LIMIT_FIELDS", "NO_LIMITS",
    "KeyRecord", "LedgerEntry", "Recovery", "StoreStats", "UsageRow",
    "AccountStore", "SessionStore", "CodeStore", "ReportStore", "CodeRefused", "ROLES", "CodeRecord", "Payment",
    "PaymentRecord", "Profile", "Session", "UsageLine", "IdempotencyConflict", "TransferReceipt",
]


class KeyStore(Protocol):
    """API keys: only their prefix (clear) and hash are stored (proxy/auth.py)."""

    async def create_key(self, username: str, prefix: str, key_hash: str, name: str,
                         models: tuple[str, ...] | None, allow_stream: bool,
                         ips: tuple[str, ...], pass_thinking: bool | None,
                         limits: KeyLimits = NO_LIMITS) -> KeyRecord: ...
    async def set_key_limits(self, prefix: str, changes: Mapping[str, int | None]) -> KeyRecord:
        """Change some of a key's limits (names from LIMIT_FIELDS; None clears one) in one
        write; the others keep their values. NotFound for an unknown prefix."""
    async def list_keys(self, username: str) -> Sequence[KeyRecord]: ...
    async def find_key(self, prefix: str) -> KeyRecord | None:
        """The key with this prefix (revoked ones included), or None. On a request's
        critical path (after the key cache): backends make it cheap."""
    async def revoke_key(self, prefix: str) -> KeyRecord: ...


class LedgerStore(Protocol):
    """Accounts and their balances; each change of a balance is a ledger entry."""

    async def create_user(self, username: str) -> Account: ...
    async def list_users(self) -> Sequence[Account]: ...
    async def get_account(self, username: str) -> Account: ...
    async def credit(self, username: str, amount: int, kind: str, paid: int | None = None,
                     ref: str | None = None, reason: str | None = None, actor: str | None = None) -> Account:
        """Add ``amount`` (a ``kind`` ledger entry; an operator's carries its reason and actor)."""
    async def debit(self, username: str, amount: int, kind: str, reason: str | None = None,
                    actor: str | None = None) -> Account:
        """Take ``amount`` off (an operator's correction), in one conditional write:
        InsufficientBalance, nothing changed, when the available balance cannot cover it."""
    async def transfer(self, from_account_id: int, to_username: str, amount: int,
                       ref: str, key_id: int | None = None) -> tuple[Account, Account]:
        """Move ``amount`` of the sender's available balance to ``to_username`` (a
        'transfer_out' and a 'transfer_in' entry). Made by API key ``key_id``: that key's
        spend caps bound it (SpendCapReached) and count it, as they do its requests."""
    async def transfer_once(self, from_account_id: int, to_username: str, amount: int, ref: str,
                            key_id: int | None, idempotency_key: str, request_hash: str) -> TransferReceipt:
        """``transfer`` under the sender's ``idempotency_key``: the same key with the same
        ``request_hash`` within 24 hours returns the first receipt (``replayed``) and moves
        nothing; with another hash, IdempotencyConflict. One transaction: concurrent
        retries move the money once. A refused transfer records nothing."""
    async def ledger(self, username: str) -> Sequence[LedgerEntry]: ...


class HoldStore(Protocol):
    """A request's money: hold, grow, then settle or release exactly once.

    Amounts: int, 0 < amount <= MAX_AMOUNT (a charge may be 0); a change that would
    leave |balance| > MAX_BALANCE raises AmountOutOfRange and applies nothing. A store
    opened without an instance id (the admin CLI) may not place holds."""

    async def place_hold(self, account_id: int, amount: int, request_id: str, key_id: int | None = None) -> int:
        """Hold ``amount`` of the available balance, owned by this instance, for the key
        ``key_id`` (of that account). In the same transaction as the balance check: when
        the key has spend caps, SpendCapReached if the key's spend in the current UTC day
        (or month) -- charges settled in it, plus its open holds, plus this one -- would
        pass the cap. Nothing is held then."""
    async def extend_hold(self, hold_id: int, extra: int) -> None:
        """Grow an open hold by ``extra`` (InsufficientBalance when the available balance
        cannot cover it, SpendCapReached when its key's caps cannot; nothing changes then)."""
    async def settle(self, hold_id: int, row: UsageRow) -> Account:
        """Close an open hold: charge ``row.cost`` (a 'charge' ledger entry, ref = the
        request id) and write its usage row. The charge may pass the hold, never the
        balance: at most what the account has beyond its other holds is charged, the rest
        recorded as the row's ``uncharged``. A replay (the hold already settled for
        ``row.request_id``) returns the account and moves nothing; NotFound for a hold
        neither open nor settled so (released, recovered by another instance)."""
    async def release(self, hold_id: int, row: UsageRow | None) -> Account:
        """Close an open hold charging nothing (``row``, if given, must cost 0); a replay
        with a row for the same request returns the account, as settle does."""
    async def charge_recovered(self, hold_id: int, row: UsageRow) -> int:
        """A hold another instance recovered (its owner's lease had lapsed) while its
        request went on: charge what ``row`` costs beyond what the recovery charged (a
        'late_charge' entry, or the 'charge' and usage row when the recovery released it),
        within the available balance. The micro-USD charged now (0 for any other hold)."""
    async def record_progress(self, items: Sequence[tuple[int, UsageRow]]) -> None:
        """Checkpoint in-flight holds, one transaction for the batch: for each (hold id,
        row) still open, remember ``row`` as the partial charge to apply if the owner dies
        (cost computed, status/error_type set by the caller). Closed holds are skipped."""


class UsageStore(Protocol):
    async def usage(self, username: str, limit: int = 50) -> Sequence[UsageRow]:
        """The latest ``limit`` usage rows of a user, newest first."""


class InstanceStore(Protocol):
    """Gateway instances and their leases (leases.py decides who is gone). A store
    opened without an instance id may recover, but not register."""

    async def register_instance(self, lease_seconds: float) -> None:
        """Insert (or replace) this instance's row: host, pid, now as start and heartbeat."""
    async def heartbeat(self) -> bool:
        """Renew the lease (True); re-register (with a warning logged) if someone took
        this instance for dead and removed its row (False: its holds were recovered)."""
    async def unregister_instance(self) -> None:
        """Remove this instance's row: any hold it still has open is orphaned from now on."""
    async def recover_orphaned_holds(self) -> Recovery:
        """Close the open holds whose owner is gone (leases.py): settle those with a
        recorded progress of cost > 0 from it (partial=True), release the others; delete
        the dead instances' rows. Never touches a live owner's holds (this instance's
        included). Safe to run from several processes at once: each hold closes once."""


class ChannelStore(Protocol):
    """Upstream channels shared by every gateway on the store: the operator's overrides
    (read by running gateways every few seconds) and each live instance's status."""

    async def set_channel_enabled(self, name: str, enabled: bool, reason: str) -> ChannelOverride:
        """Record the operator's override of channel ``name`` (replacing any before it;
        its ``version`` grows). Any store may, one without an instance id included."""
    async def channel_overrides(self) -> Sequence[ChannelOverride]:
        """Every override, by name."""
    async def publish_channels(self, channels: Sequence[dict]) -> None:
        """Replace this instance's snapshot with ``channels`` (``Router.describe`` rows,
        plain JSON values, never a key), stamped now. StoreError without an instance id."""
    async def channel_status(self) -> Sequence[ChannelSnapshot]:
        """The snapshots of the live instances (leases.py), by instance id; those of
        instances that are gone are left out."""


class ChangeStore(Protocol):
    """The change feed: a notice (``Change``) for each change of what running gateways
    cache (a key revoked or its limits or expiry changed; an account disabled, enabled or
    out of its free tier; a channel override), written in the change's own transaction by
    the operations above, so every gateway on the store can follow it
    (proxy/shared/changes.py) instead of waiting for its caches to expire. Notices are
    kept an hour."""

    async def changes_after(self, last: int, limit: int = 1000) -> Sequence[Change]:
        """The notices with an id above ``last``, by id, at most ``limit``. Ids grow with
        each notice and are never reused, but on a backend with concurrent writers
        (PostgreSQL) a notice may become visible after one with a higher id."""
    async def last_change(self) -> int:
        """The id of the newest notice (0 when there is none)."""


class MaintenanceStore(Protocol):
    applied_migrations: tuple[str, ...]  # the schema migrations opening this store applied

    async def check(self) -> list[str]:
        """The ledger's broken invariants, one line each (empty: all hold)."""
    async def stats(self) -> StoreStats: ...


class AccountStore(Protocol):
    """People behind accounts: password hash (never the password), email, role, the
    disabled flag; and when a key stops working. Disabling an account or changing its
    password ends its sessions in the same write; a disabled account's keys are refused
    (KeyRecord.account_disabled)."""

    async def create_profile(self, username: str, password_hash: str | None, email: str | None, role: str,
                             credit: int = 0) -> Profile:
        """A new account with these credentials and, when ``credit`` > 0, that much
        starting credit (a 'signup_credit' ledger entry), in one write. AlreadyExists if
        the username is taken."""
    async def get_profile(self, username: str) -> Profile: ...
    async def list_profiles(self) -> Sequence[tuple[Profile, Account]]:
        """Every account with its balance, by username."""
    async def set_password(self, username: str, password_hash: str) -> Profile:
        """Replace the password hash and end every session of the account."""
    async def set_disabled(self, username: str, disabled: bool) -> Profile:
        """Disable (ending every session) or enable an account."""
    async def set_key_expiry(self, prefix: str, expires_at: float | None) -> KeyRecord:
        """The unix time after which the key is refused (None: never)."""


class SessionStore(Protocol):
    """Logged-in browsers, found by the hash of their token; expired ones are never found."""

    async def create_session(self, account_id: int, token_hash: str, expires_at: float,
                             keep: int | None = None) -> Session:
        """A new session; every expired one is removed, and with ``keep`` only the
        account's newest ``keep`` sessions (this one included) stay."""
    async def find_session(self, token_hash: str) -> Session | None:
        """The live session with this token hash (not expired, its account not disabled)."""
    async def end_session(self, token_hash: str) -> None:
        """Remove the session (and every expired one); nothing if there is none."""


class CodeStore(Protocol):
    """Payments: redemption codes (only their hash stored) and the payments of online
    providers, each applied exactly once."""

    async def create_codes(self, codes: Sequence[tuple[str, str]], paid: int, credit: int,
                           expires_at: float | None) -> Sequence[CodeRecord]:
        """One code per (code hash, hint), each buying ``credit`` for ``paid``, in one write."""
    async def list_codes(self) -> Sequence[CodeRecord]:
        """Every code, newest first."""
    async def redeem_code(self, code_hash: str, username: str) -> tuple[CodeRecord, Account]:
        """Mark the code redeemed by ``username`` and credit its value (a 'redeem' ledger
        entry recording the paid amount), atomically: of concurrent redeems of one code
        exactly one succeeds. CodeRefused("unknown"|"used"|"expired") otherwise."""
    async def apply_payment(self, payment: Payment) -> tuple[Account, bool]:
        """Credit ``payment`` (a 'payment' ledger entry) unless its (provider, event id)
        was applied before: (the account, whether it was applied now)."""
    async def find_payment(self, provider: str, ref: str) -> PaymentRecord | None:
        """The payment of ``provider`` whose ``ref`` (or, failing that, event id) is ``ref``."""
    async def refund_payment(self, provider: str, event_id: str, refunded: int,
                             take_back: int) -> tuple[PaymentRecord, Account, int, int]:
        """A payment's refunds have come to ``refunded`` (of its paid amount), which takes back
        ``take_back`` of its credit in all: of what was not taken back (or owed) before, debit
        what is still available and record the rest as owed (the balance never goes below
        what is held), in one transaction. A total not above the last one changes nothing.
        (the payment after, the account after, debited now, owed now); NotFound without it."""


class ReportStore(Protocol):
    """Pages of what happened, newest first."""

    async def usage_page(self, username: str | None, limit: int, before: str | None = None,
                         key_prefix: str | None = None, model: str | None = None, since: float | None = None,
                         until: float | None = None) -> Sequence[UsageLine]:
        """Usage rows of ``username`` (None: everyone) older than the row of request id
        ``before``, of one key and/or one model when given, made at or after ``since``
        and before ``until`` (unix times) when given."""
    async def ledger_page(self, username: str, limit: int, before: int | None = None) -> Sequence[LedgerEntry]:
        """Ledger entries of ``username`` with an id below ``before``."""
    async def paid_total(self, username: str) -> int:
        """The sum of the paid amounts on the account's ledger entries."""
    async def spend_by_day(self, username: str, since: str) -> Sequence[tuple[str, int]]:
        """(UTC day "YYYY-MM-DD", the cost of the account's requests that day) for each day
        from ``since`` (a day) on that has any, oldest first."""


class Store(KeyStore, LedgerStore, HoldStore, UsageStore, InstanceStore, ChannelStore, ChangeStore,
            MaintenanceStore, AccountStore, SessionStore, CodeStore, ReportStore, Protocol):
    """Everything a backend provides; closed once with ``aclose``."""

    async def aclose(self) -> None: ...
