"""Accounts as a library: users and their passwords, roles and disabled flag, sessions,
self-serve keys, redemption codes and admin credit. The CLI, the JSON API and the
dashboard pages all call ``Accounts``; none of them words its own refusals.

Secrets: a password is kept only as its argon2id hash (hashed and checked in a worker
thread: never on the event loop); a session token and a redemption code only as their
SHA-256 (both are long random strings, so a fast hash is enough). None of them is ever
logged. Anti-abuse limits (throttle.py) are kept per ``Accounts`` instance: one per
running gateway.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import Callable, Sequence

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from . import admin
from .admin import AdminError, check_username
from ..auth import key_prefix
from ..catalog import Catalog
from ..config import AccountsConfig
from ..money import MICRO, credit_for, format_usd, scale
from ..limits.base import Limits, give_back_all, take_all
from ..limits.local import LocalLimits
from storage.base import (Account, AlreadyExists, CodeRecord, CodeRefused, KeyRecord, NotFound, Profile, Session,
                          Store)

MIN_PASSWORD = 8
MAX_PASSWORD = 1024        # argon2 takes any length; a megabyte "password" is a denial of service
MAX_EMAIL = 254
CODE_BYTES = 18            # 24 url-safe characters
CODE_HINT = 4              # characters of a code shown in listings
MAX_CODES = 1000           # per `code create`
HASHING_THREADS = 2        # argon2 at once: each takes password_memory_kib (64 MiB by default)
BAD_LOGIN = "Invalid username or password"
CODE_REFUSALS = MappingProxyType({"unknown": "This code is not valid: check it for typos",
                                  "used": "This code has already been redeemed",
                                  "expired": "This code has expired"})


class AccountError(AdminError):
    """A refusal, worded for the person asking: its HTTP status, and for 429 the
    seconds to wait."""

    def __init__(self, message: str, status: int = 400, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = None if retry_after is None else max(1, int(retry_after + 0.999))


def secret_hash(secret: str) -> str:
    """What is stored of a session token or a code."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def csrf_token(session_token: str) -> str:
    """The per-session token HTML forms carry (derived, so nothing more is stored)."""
    return hmac.new(session_token.encode("utf-8"), b"cheaplm-csrf", hashlib.sha256).hexdigest()


def same_token(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def parse_expiry(text: str, now: float) -> float:
    """A future moment: an ISO 8601 date (valid through that UTC day) or date-time (UTC
    unless it says otherwise) -> unix time."""
    text = (text or "").strip()
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text) + timedelta(days=1), datetime.min.time(),
                                      timezone.utc)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):
        raise AccountError(f"not a date or date-time (ISO 8601, e.g. 2027-01-31): {text[:40]!r}") from None
    when = moment.timestamp()
    if when <= now:
        raise AccountError(f"the expiry {text} is in the past")
    return when


def iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="seconds")


def check_password(password: object) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"the password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def check_email(email: object) -> str | None:
    if email is None or email == "":
        return None
    if not isinstance(email, str) or len(email) > MAX_EMAIL or email.count("@") != 1 or any(
            c.isspace() for c in email) or email.startswith("@") or email.endswith("@"):
        raise AccountError("email must be an address such as name@example.com")
    return email


@dataclass
class Accounts:
    """One store's accounts. ``clock``: unix time (sessions, expiries); ``monotonic``:
    the throttles' clock."""

    store: Store
    config: AccountsConfig = field(default_factory=AccountsConfig)
    multiplier: Decimal = Decimal(30)
    bonus: tuple[tuple[int, int], ...] = ()  # [payments] bonus: codes buy what any payment buys (money.credit_for)
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    limits: Limits | None = None  # the gateway's (runtime.py); in-process on ``monotonic`` otherwise
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
        self.login_accounts = limits.throttle("login_account", c.login_failures_per_account, c.login_window)
        self.login_ips = limits.throttle("login_ip", c.login_failures_per_ip, c.login_window)
        self.redeem_users = limits.throttle("redeem_user", c.redeem_failures_per_user, c.redeem_window)
        self.redeem_ips = limits.throttle("redeem_ip", c.redeem_failures_per_ip, c.redeem_window)

    # -- passwords ----------------------------------------------------------------------
    async def hash_password(self, password: str) -> str:
        return await trio.to_thread.run_sync(self.hasher.hash, check_password(password), limiter=self.hashing)

    async def _verify(self, stored: str | None, password: str) -> bool:
        """Constant work whether or not there is a hash: an unknown user costs what a
        wrong password does."""
        if stored is None:
            if self._dummy_hash is None:
                self._dummy_hash = await trio.to_thread.run_sync(self.hasher.hash, secrets.token_urlsafe(16),
                                                                 limiter=self.hashing)
            stored = self._dummy_hash
            password = password + "\0never"
        try:
            return await trio.to_thread.run_sync(self.hasher.verify, stored, password, limiter=self.hashing)
        except (VerificationError, InvalidHashError):
            return False

    # -- users ----------------------------------------------------------------------------
    async def create_user(self, username: str, password: str | None = None, email: str | None = None,
                          role: str = "user", credit: int = 0) -> Profile:
        check_username(username)
        password_hash = None if password is None else await self.hash_password(password)
        return await self.store.create_profile(username, password_hash, check_email(email), role, credit)

    async def set_password(self, username: str, password: str) -> Profile:
        """Ends every session of the account."""
        return await self.store.set_password(username, await self.hash_password(password))

    async def change_password(self, username: str, current: str, new: str) -> Profile:
        """Wrong current passwords count as failed logins of the account (and its lock holds)."""
        profile = await self.store.get_profile(username)
        check_password(new)
        wait = await self.login_accounts.take(username)
        if wait:
            raise AccountError("Too many failed password checks; try again later", 429, wait)
        if not isinstance(current, str) or not await self._verify(profile.password_hash, current):
            raise AccountError("the current password is not right", 403)
        await self.login_accounts.give_back(username)
        return await self.set_password(username, new)

    async def set_disabled(self, username: str, disabled: bool) -> tuple[Profile, Sequence[KeyRecord]]:
        """Disabling ends the account's sessions; its keys are refused from then on (a
        running gateway: within key_cache_seconds; the caller forgets them at once on its
        own). Returns the account and its keys."""
        profile = await self.store.set_disabled(username, disabled)
        return profile, await self.store.list_keys(username)

    # -- signup, login, sessions --------------------------------------------------------
    async def signup(self, username: object, password: object, email: object, ip: str | None) -> tuple[Profile, str]:
        if not self.config.signup:
            raise AccountError("Signup is closed: ask the operator for an account", 403)
        if not isinstance(username, str):
            raise AccountError("username (string) is required")
        check_username(username)
        check_password(password)
        where = ip or "?"
        wait = await self.signups.take(where)
        if wait:
            raise AccountError("Too many signups from your address; try again later", 429, wait)
        credit = scale(MICRO, self.config.signup_credit)
        try:
            profile = await self.create_user(username, password, email, "user", credit)
        except AlreadyExists:
            raise AccountError(f"the username {username} is taken", 409) from None
        return profile, await self.new_session(profile)

    async def login(self, username: object, password: object, ip: str | None) -> tuple[Profile, str]:
        """A new session (never an old one: no fixation). The same message for an unknown
        user and a wrong password; too many failures, per account or per address: 429."""
        if not isinstance(username, str) or not isinstance(password, str) or len(password) > MAX_PASSWORD:
            raise AccountError(BAD_LOGIN, 401)
        where = ip or "?"
        slots = [(self.login_accounts, username), (self.login_ips, where)]
        wait = await take_all(slots)
        if wait:
            raise AccountError("Too many failed logins; try again later", 429, wait)
        try:
            profile = await self.store.get_profile(username)
        except NotFound:
            profile = None
        if not await self._verify(profile.password_hash if profile else None, password):
            raise AccountError(BAD_LOGIN, 401)  # (the failure keeps its slots)
        await give_back_all(slots)
        if profile.disabled:
            raise AccountError("This account is disabled", 403)
        await self.login_accounts.clear(username)
        return profile, await self.new_session(profile)

    async def new_session(self, profile: Profile) -> str:
        token = secrets.token_urlsafe(32)
        await self.store.create_session(profile.account_id, secret_hash(token),
                                        self.clock() + self.config.session_hours * 3600)
        return token

    async def session(self, token: str | None) -> Session | None:
        if not token or len(token) > 256:
            return None
        return await self.store.find_session(secret_hash(token))

    async def logout(self, token: str | None) -> None:
        if token and len(token) <= 256:
            await self.store.end_session(secret_hash(token))

    # -- keys ---------------------------------------------------------------------------
    async def create_key(self, catalog: Catalog, username: str, name: str = "default",
                         models: Sequence[str] | None = None, allow_stream: bool = True, ips: Sequence[str] = (),
                         expires_at: float | None = None) -> tuple[str, KeyRecord]:
        """``admin.create_key``'s restrictions, plus an expiry (set before the key is
        returned: a key whose expiry could not be set is revoked, never shown)."""
        key, record = await admin.create_key(self.store, catalog, username, name, models, allow_stream, ips)
        if expires_at is not None:
            try:
                record = await self.store.set_key_expiry(record.prefix, expires_at)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await self.store.revoke_key(record.prefix)
                raise
        return key, record

    async def revoke_key(self, username: str, prefix: str) -> KeyRecord:
        """Only the user's own keys (anyone else's prefix is "not found")."""
        prefix = key_prefix(prefix.strip())
        if not any(k.prefix == prefix for k in await self.store.list_keys(username)):
            raise AccountError(f"no key with prefix {prefix}", 404)
        return await self.store.revoke_key(prefix)

    # -- money --------------------------------------------------------------------------
    async def admin_credit(self, username: str, amount: int, paid: int | None, reason: str,
                           admin_name: str) -> Account:
        """An operator's credit: a ledger entry naming the admin and the reason."""
        reason = " ".join(str(reason or "").split())[:200]
        if not reason:
            raise AccountError("a reason is required")
        return await self.store.credit(username, amount, "admin_credit", paid, f"{admin_name}: {reason}")

    async def create_codes(self, paid: int, count: int = 1, expires_at: float | None = None) -> list[str]:
        """``count`` single-use codes, each buying what paying ``paid`` buys (credit_for): the codes
        (shown once; only their hashes are stored)."""
        if not 1 <= count <= MAX_CODES:
            raise AccountError(f"--count must be 1 to {MAX_CODES}")
        if paid <= 0:
            raise AccountError("--paid must be positive")
        codes = [secrets.token_urlsafe(CODE_BYTES) for _ in range(count)]
        await self.store.create_codes([(secret_hash(c), c[:CODE_HINT]) for c in codes], paid,
                                      credit_for(paid, self.multiplier, self.bonus), expires_at)
        return codes

    async def redeem(self, username: str, code: object, ip: str | None) -> tuple[CodeRecord, Account]:
        """Credit a code's value once. Failures (wrong, used, expired) count against the
        user and the address: past the limit, 429 before the code is even looked at."""
        where = ip or "?"
        slots = [(self.redeem_users, username), (self.redeem_ips, where)]
        wait = await take_all(slots)
        if wait:
            raise AccountError("Too many failed redeem attempts; try again later", 429, wait)
        text = code.strip() if isinstance(code, str) else ""
        try:
            if not text or len(text) > 128:
                raise CodeRefused("unknown")
            redeemed = await self.store.redeem_code(secret_hash(text), username)
        except CodeRefused as refused:
            raise AccountError(CODE_REFUSALS[refused.reason]) from None  # (the failure keeps its slots)
        await give_back_all(slots)
        return redeemed


def describe_code(code: CodeRecord, now: float) -> dict[str, str]:
    return {"code": code.hint + "...", "paid_usd": format_usd(code.paid), "credit_usd": format_usd(code.credit),
            "status": code.status(now), "created": code.created_at, "expires": iso(code.expires_at) or "-",
            "redeemed": code.redeemed_at or "-", "by": code.redeemed_by or "-"}
