"""What the stores hand back and take: accounts, keys, usage rows, ledger entries,
recovery and maintenance figures; and the bounds every amount must keep.

All amounts are integer micro-USD (1 USD = 1,000,000). Every time is unix time in
seconds (a float, UTC), in records as in every table: one representation that compares,
orders and subtracts the same in SQLite and PostgreSQL and in Python (the presentation
layer formats it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from .errors import AmountOutOfRange

MAX_AMOUNT = 10**15   # micro-USD ($1e9): the largest single credit, transfer, hold or charge
MAX_BALANCE = 10**17  # micro-USD: the largest |balance| (and held); int64 tops out at ~9.2e18


def iso_time(moment: float | None) -> str | None:
    """A recorded time for people and the wire: ISO 8601 UTC with milliseconds (the text
    the ledger stored before 0006), None for None."""
    return None if moment is None else datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="milliseconds")


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
    created_at: float

    @property
    def available(self) -> int:
        return self.balance - self.held


MAX_RATE = 2**53  # the largest rpm, tpm or concurrency a key may have
LIMIT_FIELDS = ("rpm", "tpm", "concurrency", "daily_usd", "monthly_usd")


@dataclass(frozen=True)
class KeyLimits:
    """A key's limits, None where it has none. ``rpm``, ``tpm`` (input + output tokens)
    and ``concurrency`` are rates, kept by the gateway's limiter (proxy/limits.py);
    ``daily_usd`` and ``monthly_usd`` are spend caps in micro-USD per UTC calendar day and
    month, enforced by the store with the hold, like the balance.

    ``limited`` (any rate limit) and ``capped`` (any spend cap) are computed once, so a
    key without limits costs one attribute check per request."""

    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    daily_usd: int | None = None
    monthly_usd: int | None = None
    limited: bool = field(init=False, repr=False, compare=False)
    capped: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "limited", bool(self.rpm or self.tpm or self.concurrency))
        object.__setattr__(self, "capped", bool(self.daily_usd or self.monthly_usd))


NO_LIMITS = KeyLimits()


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
    created_at: float = 0.0
    last_used_at: float | None = None
    revoked_at: float | None = None
    expires_at: float | None = None         # unix time after which the gateway refuses it; None: never
    account_disabled: bool = False          # its user is disabled: the gateway refuses it
    free_tier: bool = False                 # its user never paid (a ledger entry with paid > 0)
    limits: KeyLimits = NO_LIMITS


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
    channel: str | None = None      # the upstream channel that served (None: a single upstream)
    attempts: int | None = None     # upstream attempts it took (0: none made; None: a row from before 0004)
    server_tool_use: str | None = None  # server tool uses by kind, a JSON object ({"web_search":3}); None: none
    server_tool_cost: int = 0       # the part of ``cost`` for those uses
    uncharged: int = 0              # what the request cost beyond the balance: not charged (never below zero)
    created_at: float | None = None  # None: now, when written


@dataclass(frozen=True)
class TransferReceipt:
    """What a transfer did: as it was done the first time, when replayed by its idempotency key."""

    amount: int
    from_username: str
    to_username: str
    sender_balance: int     # the balances right after it
    receiver_balance: int
    replayed: bool = False  # this is the first transfer's receipt: nothing moved now


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    account_id: int
    delta: int
    balance_after: int
    kind: str
    ref: str | None
    paid: int | None
    created_at: float
    reason: str | None = None       # an operator's credit or correction: why (0008)
    actor: str | None = None        # and who made it ("cli:root", "web:alice")


ROLES = ("user", "admin")


@dataclass(frozen=True)
class Profile:
    """An account as a person who logs in: who, and how (accounts.py hashes the password;
    None: no password set, no login)."""

    account_id: int
    username: str
    email: str | None
    role: str                               # one of ROLES
    password_hash: str | None
    disabled: bool
    created_at: float

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class Session:
    """A logged-in browser: found by the hash of its token, never the token itself."""

    id: int
    profile: Profile
    expires_at: float                       # unix time


@dataclass(frozen=True)
class CodeRecord:
    """A redemption code: only the hash of the code is stored. ``credit`` is the API value
    it buys (``paid`` x the value multiplier when it was made)."""

    id: int
    code_hash: str
    hint: str                               # its first characters, to tell codes apart in a listing
    paid: int
    credit: int
    created_at: float
    expires_at: float | None = None         # unix time; None: never
    redeemed_at: float | None = None
    redeemed_by: str | None = None          # username

    def status(self, now: float) -> str:
        if self.redeemed_at is not None:
            return "redeemed"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "open"


@dataclass(frozen=True)
class Payment:
    """A payment applied to an account, once per (provider, event id)."""

    provider: str
    event_id: str
    username: str
    paid: int
    credit: int
    ref: str | None = None   # the provider's id its refunds name (Stripe: the payment intent)


@dataclass(frozen=True)
class PaymentRecord:
    """An applied payment and what was refunded of it: ``refunded`` of ``paid``, and of
    ``credit`` the part ``taken_back`` from the balance and the part ``owed`` (spent
    already when the refund came)."""

    provider: str
    event_id: str
    ref: str | None
    username: str
    paid: int
    credit: int
    refunded: int
    taken_back: int
    owed: int
    created_at: float


@dataclass(frozen=True)
class UsageLine:
    """A usage row with whose it is: the user and the key's prefix (reports)."""

    row: UsageRow
    username: str
    key_prefix: str


@dataclass(frozen=True)
class ChannelOverride:
    """An operator's word on a channel (``cheaplm upstream enable|disable``), which every
    running gateway applies. ``version`` grows with each change of it, so a gateway
    applies each change once (a channel the operator enabled that then has its
    credential refused stays disabled until the operator enables it again)."""

    name: str
    enabled: bool
    reason: str
    set_at: float   # unix time
    version: int


@dataclass(frozen=True)
class ChannelSnapshot:
    """What one live gateway instance last published of its channels: the rows of its
    router's ``describe()`` (never a key), as of ``at`` (unix time)."""

    instance_id: str
    at: float
    channels: tuple[dict, ...]


CHANGE_KINDS = ("key", "account", "channel")


@dataclass(frozen=True)
class Change:
    """A notice in the change feed: something running gateways cache changed. Written in
    the transaction of the change itself. ``kind`` names what ``name`` is: "key" (a key's
    prefix: revoked, its limits or expiry changed), "account" (an account id, as text:
    disabled, enabled, its free tier ended), "channel" (a channel's name: the operator's
    override)."""

    id: int
    kind: str
    name: str
    at: float  # unix time
