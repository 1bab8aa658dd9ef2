"""Every "not now" of the gateway behind one set of async interfaces: a key's rate limits
(requests, tokens, concurrency), the anti-abuse throttles (signup, login, redeem) and the
transfer bucket.

``Limits`` makes them; ``runtime.py`` chooses the implementation in one place. The
in-process one (``local.py``) is exact on one node; a shared one (Redis, for many
processes) is one more module implementing these protocols. Every method is async so a
shared implementation can reach its server; the in-process one never awaits, which is
what makes it exact under any concurrency.
"""

from __future__ import annotations

from typing import Protocol

from storage.base import KeyLimits


class Admission(Protocol):
    """A request a key's limits let through: it holds a concurrency slot and a token
    reservation until it finishes or is cancelled, exactly once."""

    headers: list[tuple[bytes, bytes]]  # anthropic-ratelimit-* for the response

    async def finish(self, tokens_used: int) -> None:
        """The request is over: what it really used replaces its token reservation."""

    async def cancel(self) -> None:
        """The request never reached the upstream: it counts for nothing."""


class KeyLimiter(Protocol):
    async def admit(self, key_id: int, limits: KeyLimits, tokens: int) -> Admission | None:
        """Let a request through, or raise a 429 ``rate_limit_error`` (a GatewayError)
        saying when to retry. None for a key without limits."""


class Throttle(Protocol):
    """At most ``limit`` events per key (an IP, a username) in any ``window`` seconds."""

    limit: int
    window: float

    async def take(self, key: str) -> float:
        """Atomically record an event for ``key`` when the window has room and return 0;
        otherwise record nothing and return the seconds until there is room. Take the
        slot before the expensive check it guards, so N concurrent attempts pass at most
        ``limit``."""

    async def give_back(self, key: str) -> None:
        """The last event taken for ``key`` did not count (the attempt succeeded)."""

    async def clear(self, key: str) -> None:
        """Forget every event of ``key``."""


class Backoff(Protocol):
    """Progressive delays per key (an account and client pair): after the n-th failure in
    a row (n >= 2; the first is a typo), the key's next attempt waits ``base`` x 2^(n-2)
    seconds, at most ``most``."""

    async def take(self, key: str) -> float:
        """Atomically: 0 when the key may try now (the attempt counts as a failure, and
        the key's next attempt is delayed, until ``give_back``); otherwise the seconds
        to wait, nothing recorded. Of concurrent attempts of one key, two go through at
        most (the typo's and one more)."""

    async def give_back(self, key: str) -> None:
        """The attempt succeeded: the key's failures and delay are forgotten."""


class Memo(Protocol):
    """Keys remembered for ``ttl`` seconds (the clients an account logged in from)."""

    async def add(self, key: str) -> None: ...

    async def has(self, key: str) -> bool: ...


class Bucket(Protocol):
    """A token bucket per key: ``per_minute`` events a minute, in bursts of that many."""

    async def take(self, key: object) -> float:
        """0 when allowed (a token taken); otherwise the seconds until one is."""

    async def give_back(self, key: object) -> None:
        """The token last taken for ``key`` did not count (another limit refused the event)."""


class Limits(Protocol):
    """The factory of every limiter a running gateway uses."""

    def key_limiter(self) -> KeyLimiter: ...

    def throttle(self, name: str, limit: int, window: float) -> Throttle: ...

    def bucket(self, name: str, per_minute: int) -> Bucket: ...

    def backoff(self, name: str, base: float, most: float) -> Backoff: ...

    def memo(self, name: str, ttl: float) -> Memo: ...


async def take_all(throttles: list[tuple[Throttle, str]]) -> float:
    """Take a slot in every (throttle, key), or none: the longest wait when any is full."""
    taken: list[tuple[Throttle, str]] = []
    for throttle, key in throttles:
        wait = await throttle.take(key)
        if wait:
            for done, done_key in reversed(taken):
                await done.give_back(done_key)
            return wait
        taken.append((throttle, key))
    return 0.0


async def give_back_all(throttles: list[tuple[Throttle, str]]) -> None:
    for throttle, key in throttles:
        await throttle.give_back(key)
