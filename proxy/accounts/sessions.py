"""Passwords, signup, login and sessions, and the login throttles. Part of ``Accounts``.

Secrets: a password is kept only as its argon2id hash (hashed and checked in a worker
thread, never on the event loop); a session token only as its SHA-256 (a long random
string: a fast hash is enough). None of them is ever logged.

Failed logins (README "Accounts: login throttles"): every slot is taken before the
password is checked and given back when it was right, so N concurrent guesses verify at
most what the limits allow.

- **Per account and client** (the pair): progressive delays. After a pair's n-th failure
  in a row (n >= 2: the first is a typo) its next attempt waits ``login_backoff`` x
  2^(n-2) seconds (at most ``login_window``).
- **Per client IP**, across accounts: ``login_failures_per_ip`` within ``login_window``.
- **Per account**, from clients it has not logged in from: ``login_failures_per_account``
  within ``login_window`` (slower than any one client's backoff allows from many IPs).
  A client the account logged in from in the last ``login_known_days`` is not held by
  it: a guessing attack from elsewhere does not lock the owner out.

A disabled account answers a wrong password as any wrong password does (401) and says
it is disabled (403) only to the right one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import trio
from argon2.exceptions import InvalidHashError, VerificationError

from ..auth import address_key
from ..limits.base import give_back_all, take_all
from ..money import MICRO, scale
from .checks import MAX_PASSWORD, check_password, check_username
from .errors import AccountError
from storage.base import NotFound, Profile, Session


BAD_LOGIN = "Invalid username or password"
MAX_TOKEN = 256


def secret_hash(secret: str) -> str:
    """What is stored of a session token or a code."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def csrf_token(session_token: str) -> str:
    """The per-session token HTML forms carry (derived, so nothing more is stored)."""
    return hmac.new(session_token.encode("utf-8"), b"cheaplm-csrf", hashlib.sha256).hexdigest()


def same_token(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def client_key(username: str, ip: str | None) -> str:
    return f"{username}\0{address_key(ip)}"


class Sessions:
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

    async def _checked_password(self, username: str, password: str, ip: str | None) -> Profile | None:
        """The account when ``password`` is its password, else None; through the login
        throttles (429 before anything is checked when one is full)."""
        pair = client_key(username, ip)
        slots = [(self.login_backoff, pair), (self.login_ips, address_key(ip))]
        if not await self.known_clients.has(pair):
            slots.append((self.login_accounts, username))
        wait = await take_all(slots)
        if wait:
            raise AccountError("Too many failed logins; try again later", 429, wait)
        try:
            profile = await self.store.get_profile(username)
        except NotFound:
            profile = None
        if not await self._verify(profile.password_hash if profile else None, password):
            return None  # the failure keeps its slots
        await give_back_all(slots)
        await self.known_clients.add(pair)
        return profile

    async def change_password(self, username: str, current: object, new: object,
                              ip: str | None = None) -> Profile:
        """Every session of the account ends. A wrong current password counts as a failed
        login of the account from ``ip``."""
        check_password(new)
        if not isinstance(current, str) or len(current) > MAX_PASSWORD:
            raise AccountError("the current password is not right", 403, param="current_password")
        if await self._checked_password(username, current, ip) is None:
            raise AccountError("the current password is not right", 403, param="current_password")
        return await self.set_password(username, new)  # type: ignore[arg-type]

    # -- signup, login, sessions --------------------------------------------------------
    async def signup(self, username: object, password: object, email: object,
                     ip: str | None) -> tuple[Profile, str]:
        if not self.config.signup:
            raise AccountError("Signup is closed: ask the operator for an account", 403)
        if not isinstance(username, str):
            raise AccountError("username (string) is required", param="username")
        check_username(username)
        check_password(password)
        wait = await self.signups.take(address_key(ip))
        if wait:
            raise AccountError("Too many signups from your address; try again later", 429, wait)
        credit = scale(MICRO, self.config.signup_credit)
        profile = await self.claim_username(username, password, email, credit)  # type: ignore[arg-type]
        return profile, await self.new_session(profile)

    async def login(self, username: object, password: object, ip: str | None) -> tuple[Profile, str]:
        """A new session (never an old one: no fixation). The same message for an unknown
        user and a wrong password, and for a disabled account's wrong password."""
        if not isinstance(username, str) or not isinstance(password, str) or len(password) > MAX_PASSWORD:
            raise AccountError(BAD_LOGIN, 401)
        profile = await self._checked_password(username, password, ip)
        if profile is None:
            raise AccountError(BAD_LOGIN, 401)
        if profile.disabled:
            raise AccountError("This account is disabled", 403)
        return profile, await self.new_session(profile)

    async def new_session(self, profile: Profile) -> str:
        """A session for ``profile``; past ``max_sessions`` the account's oldest ends."""
        token = secrets.token_urlsafe(32)
        await self.store.create_session(profile.account_id, secret_hash(token),
                                        self.clock() + self.config.session_hours * 3600,
                                        keep=self.config.max_sessions)
        return token

    async def session(self, token: str | None) -> Session | None:
        if not token or len(token) > MAX_TOKEN:
            return None
        return await self.store.find_session(secret_hash(token))

    async def logout(self, token: str | None) -> None:
        if token and len(token) <= MAX_TOKEN:
            await self.store.end_session(secret_hash(token))
