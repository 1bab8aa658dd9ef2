"""The storage errors: what every backend raises, and what the gateway maps to answers
(StoreUnavailable: 503 with Retry-After; InsufficientBalance: 402; NotFound, ...)."""

from __future__ import annotations


class StoreError(Exception):
    """Base of the storage errors the gateway maps to user-facing answers."""


class StoreUnavailable(StoreError):
    """The store cannot serve right now (write lock not had within the busy timeout,
    read-only or full disk, I/O error, unopenable file). Nothing was applied; the
    caller may answer 503 with ``Retry-After: retry_after``."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreBusy(StoreUnavailable):
    """Another connection (another process: a gateway, the admin CLI) holds the write
    lock, or the rows' locks, longer than the busy timeout. Nothing was applied."""


class LedgerMissing(StoreError):
    """No ledger at the location (no file, or a database without a schema), and the
    caller did not ask to create one."""


class MigrationNeeded(StoreError):
    """The ledger's schema is older than this version's and the caller may not migrate it
    (an admin command beside a running gateway): ``pending`` names the migrations."""

    def __init__(self, shown: str, pending: tuple[str, ...]) -> None:
        super().__init__(f"the ledger at {shown} needs {len(pending)} schema migration(s) "
                         f"({', '.join(pending)}): run `cheaplm db migrate`")
        self.pending = pending


class SchemaTooNew(StoreError):
    """The ledger records migrations this version does not know: a newer CheapLM made it."""

    def __init__(self, shown: str, unknown: tuple[str, ...]) -> None:
        super().__init__(f"the ledger at {shown} has a newer schema than this CheapLM knows "
                         f"({', '.join(unknown)}): upgrade CheapLM")
        self.unknown = unknown


class StoreConfigError(StoreError):
    """A ledger location this build cannot open: an unknown URL scheme, a backend not
    built in, a malformed URL. A configuration mistake, worded for the operator in one
    line (never with the URL's password)."""


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


class SpendCapReached(StoreError):
    """A hold (or its growth) would take a key's spend in the current UTC day or month
    (settled charges + open holds + this one) past its cap. Nothing was applied;
    ``retry_after``: whole seconds until that period rolls over."""

    def __init__(self, period: str, cap: int, committed: int, needed: int, retry_after: int) -> None:
        super().__init__(f"{period} spend cap {cap} micro-USD: {committed} committed, {needed} more needed")
        self.period, self.cap, self.committed, self.needed = period, cap, committed, needed
        self.retry_after = retry_after

    @property
    def left(self) -> int:
        return max(self.cap - self.committed, 0)


class IdempotencyConflict(StoreError):
    """An idempotency key already used, within its lifetime, for a different request."""


class CodeRefused(StoreError):
    """A redemption code that cannot be redeemed; ``reason`` is "unknown", "used" or
    "expired". Nothing was applied."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"code {reason}")
        self.reason = reason
