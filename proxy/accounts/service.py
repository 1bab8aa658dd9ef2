"""The accounts library: the one the CLI, the JSON API and the dashboard pages call for
every operation on users, keys, limits, top-ups, credits, codes, sessions and transfers.
None of its callers words its own refusals: the library raises ``AccountError``, worded
for people (the CLI names its flags from ``param``; the HTTP side answers its status).

``Accounts`` is put together from one part per concern (users.py, sessions.py, keys.py,
credits.py, codes.py); this module holds what they share: the store, the settings, the
clocks, the throttles (from the gateway's ``Limits``: one set per running gateway) and
the ``key_changed`` hook the running gateway sets to forget a key it caches at once (the
CLI sets none: every gateway learns a change from the ledger's change feed,
proxy/shared/changes.py, within change_poll_interval).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

import trio
from argon2 import PasswordHasher

from ..config import AccountsConfig
from ..limits.base import Limits
from ..limits.local import LocalLimits
from .checks import check_email, check_password, iso, parse_expiry
from .codes import Codes, describe_code
from .credits import Credits
from .errors import AccountError
from .keys import Keys
from .sessions import BAD_LOGIN, Sessions, csrf_token, same_token, secret_hash
from .users import Users
from storage.base import Store

__all__ = ["Accounts", "AccountError", "BAD_LOGIN", "check_email", "check_password", "csrf_token", "describe_code",
           "iso", "parse_expiry", "same_token", "secret_hash"]

HASHING_THREADS = 2        # argon2 at once: each takes password_memory_kib (64 MiB by default)
DAY = 86400.0


@dataclass
class Accounts(Users, Sessions, Keys, Credits, Codes):
    """One store's accounts. ``clock``: unix time (sessions, expiries); ``monotonic``:
    the throttles' clock; ``limits``: the gateway's (runtime.py), in-process on
    ``monotonic`` otherwise; ``key_changed``: called with a key's prefix whenever the
    library changes or revokes it (a running gateway forgets its cached record)."""

    store: Store
    config: AccountsConfig = field(default_factory=AccountsConfig)
    multiplier: Decimal = Decimal(30)
    bonus: tuple[tuple[int, int], ...] = ()  # [payments] bonus: codes buy what any payment buys (money.credit_for)
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    limits: Limits | None = None
    key_changed: Callable[[str], None] = lambda prefix: None
    hasher: PasswordHasher = field(init=False)
    hashing: trio.CapacityLimiter = field(init=False)
    _dummy_hash: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        c = self.config
        self.hasher = PasswordHasher(time_cost=c.password_time_cost, memory_cost=c.password_memory_kib)
        self.hashing = trio.CapacityLimiter(HASHING_THREADS)  # a login flood queues, it does not exhaust memory
        limits = self.limits or LocalLimits(self.monotonic)
        # Failure throttles take their slot before the password or code is checked (and give
        # it back when it was right), so concurrent guesses check at most the limit.
        self.signups = limits.throttle("signup", c.signups_per_hour, 3600.0)
        self.login_backoff = limits.backoff("login_client", c.login_backoff, c.login_window)
        self.login_accounts = limits.throttle("login_account", c.login_failures_per_account, c.login_window)
        self.login_ips = limits.throttle("login_ip", c.login_failures_per_ip, c.login_window)
        self.known_clients = limits.memo("login_known", c.login_known_days * DAY)
        self.redeem_users = limits.throttle("redeem_user", c.redeem_failures_per_user, c.redeem_window)
        self.redeem_ips = limits.throttle("redeem_ip", c.redeem_failures_per_ip, c.redeem_window)
