"""Every limiter of limits/base.py shared by a fleet through Redis: the same semantics as
the in-process ones (limits/local.py), exact across processes. Each check-and-record
is one Lua script (shared/scripts.py), atomic in Redis and on Redis's clock.

When Redis fails or takes longer than ``redis_timeout``, the call is answered by the
in-process limiter instead and the connection counts as down (``SharedRedis.failed``,
logged once); while it is down nothing waits on Redis (each process keeps its own
counts, as without ``redis_url``) and once its watcher's ping answers the shared
limiters are used again. A request is never refused because Redis is down.

A key's concurrency slots are a sorted set of admission ids scored by a lease's expiry
(``LEASE`` s, renewed every ``LEASE / 3`` s by ``RedisLimits.keep`` for the requests
still running here): a node that dies mid-request frees its slots within ``LEASE`` s,
however long a stream lasts. An admit, finish or cancel Redis may have run without the
process hearing back in time (a slow Redis) is undone or done again (each idempotent)
once Redis answers again (``settle``), so a blip does not hold a key's slots for the
lease. A key without limits never touches Redis; a key with only
``rpm`` costs one script per request (``admit``), with ``tpm`` or ``concurrency`` two
(``admit`` and ``finish``)."""

from __future__ import annotations

from collections import deque

import itertools
import secrets
from typing import Awaitable, Callable, TypeVar

import trio

from ..limits.backoff import LocalBackoff, LocalMemo
from ..limits.bucket import LocalBucket
from ..limits.keys import WINDOW, Admission, Limiter, limit_headers, refusal
from ..limits.local import LocalLimits
from ..limits.throttle import LocalThrottle
from . import scripts
from .client import FAILURES, SharedRedis
from storage.base import KeyLimits

T = TypeVar("T")

LEASE = 60.0            # a concurrency slot's life without renewal
SETTLE_EVERY = 1.0      # how soon what Redis missed is run once it answers again
KEY_TTL = 120           # a key limiter's keys outlive its window and its slots' leases
MAX_PENDING = 10_000     # finishes and cancels kept for when Redis answers again
BACKOFF_MEMORY = 86_400.0  # a key's failures in a row are remembered this long after the last one



class Shared:
    """The connection and one way to call it: Redis, else the process's own answer."""

    def __init__(self, redis: SharedRedis) -> None:
        self.redis = redis
        self.node = secrets.token_hex(6)  # this process, in the ids it writes
        self._serial = itertools.count()
        self.calls = 0  # round trips made (tests and the bench read it)

    def unique(self) -> str:
        return f"{self.node}:{next(self._serial)}"

    async def call(self, command: Callable[[], Awaitable[T]]) -> T:
        """``command()`` within the timeout; raises one of FAILURES (Redis marked down)."""
        self.calls += 1
        return await self.redis.run(command)

    async def either(self, command: Callable[[], Awaitable[T]], local: Callable[[], Awaitable[T]]) -> T:
        """Redis's answer while it is up and answers in time, else the process's."""
        if self.redis.up:
            try:
                return await self.call(command)
            except FAILURES:
                pass
        return await local()

    async def quietly(self, command: Callable[[], Awaitable[object]]) -> None:
        """A write whose loss only costs precision (a slot freed by its lease, a
        reservation kept): nothing to fall back to."""
        if self.redis.up:
            try:
                await self.call(command)
            except FAILURES:
                pass


class RedisAdmission:
    """A request let through by Redis: its slot and reservation live there until it
    finishes or is cancelled, exactly once."""

    __slots__ = ("limiter", "keys", "id", "limits", "headers", "done")

    def __init__(self, limiter: "RedisKeyLimiter", keys: list[str], id: str, limits: KeyLimits,
                 headers: list[tuple[bytes, bytes]]) -> None:
        self.limiter, self.keys, self.id, self.limits, self.headers = limiter, keys, id, limits, headers
        self.done = False

    def _close(self) -> bool:
        if self.done:
            return False
        self.done = True
        self.limiter.running.pop(self.id, None)
        return True

    async def finish(self, tokens_used: int) -> None:
        if self._close() and (self.limits.tpm or self.limits.concurrency):  # (rpm alone: nothing to change)
            await self.limiter.surely(self.limiter.finish_script, self.keys, [self.id, tokens_used])

    async def cancel(self) -> None:
        if self._close():
            await self.limiter.surely(self.limiter.cancel_script, self.keys, [self.id])


class RedisKeyLimiter:
    """limits/keys.py's limiter, shared: its rpm, tpm and concurrency windows in Redis."""

    def __init__(self, shared: Shared, local: Limiter) -> None:
        self.shared, self.local = shared, local
        client = shared.redis.client
        self.admit_script = client.register_script(scripts.ADMIT)
        self.finish_script = client.register_script(scripts.FINISH)
        self.cancel_script = client.register_script(scripts.CANCEL)
        self.renew_script = client.register_script(scripts.RENEW)
        self.running: dict[str, str] = {}  # admission id -> its key's slots, while it holds one
        self.pending: dict[str, tuple] = {}  # admission id -> (script, keys, args) Redis may have missed

    def keys(self, key_id: int) -> list[str]:
        tag = f"{{{key_id}}}"  # (one hash slot per key: a Redis Cluster runs the scripts too)
        return [self.shared.redis.key("key", tag, part) for part in ("requests", "token_times", "tokens", "slots")]

    async def admit(self, key_id: int, limits: KeyLimits, tokens: int) -> "RedisAdmission | Admission | None":
        if not limits.limited:
            return None
        if self.shared.redis.up:
            keys, id = self.keys(key_id), self.shared.unique()
            if self.pending:  # (this key's first: the rest at the next renewal, off the request's path)
                await self.settle(keys[3])
            try:
                return await self.shared.call(lambda: self._admit(keys, id, limits, tokens))
            except FAILURES:  # (Redis may have run it all the same: undone when it answers again)
                self._later(id, self.cancel_script, keys, [id])
            except trio.Cancelled:  # (the client left while it was on the wire: the same)
                self._later(id, self.cancel_script, keys, [id])
                raise
        return await self.local.admit(key_id, limits, tokens)

    async def surely(self, script, keys: list[str], args: list) -> None:
        """A finish or cancel: now, or when Redis answers again (the slot is not left to
        its lease, the reservation to the window)."""
        if self.shared.redis.up:
            try:
                await self.shared.call(lambda: script(keys=keys, args=args))
                return
            except FAILURES:
                pass
        self._later(args[0], script, keys, args)

    def _later(self, id: str, script, keys: list[str], args: list) -> None:
        if len(self.pending) >= MAX_PENDING:  # (a long outage: the oldest are left to their lease and window)
            del self.pending[next(iter(self.pending))]
        self.pending[id] = (script, keys, args)

    async def settle(self, slots: str | None = None) -> None:
        """Run the finishes and cancels Redis missed (each idempotent), oldest first: of
        the key whose ``slots`` are given, or all."""
        for id, (script, keys, args) in list(self.pending.items()):
            if slots is not None and keys[3] != slots:
                continue
            if not self.shared.redis.up:
                return
            try:
                await self.shared.call(lambda: script(keys=keys, args=args))
            except FAILURES:
                return
            self.pending.pop(id, None)

    async def _admit(self, keys: list[str], id: str, limits: KeyLimits, tokens: int) -> RedisAdmission:
        reserve = min(tokens, limits.tpm) if limits.tpm else 0
        answer = await self.admit_script(keys=keys, args=[
            id, limits.rpm or 0, limits.tpm or 0, limits.concurrency or 0, reserve, WINDOW, LEASE, KEY_TTL])
        admitted, reason, wait, requests, requests_reset, token_sum, tokens_reset = answer
        headers = limit_headers(limits, int(requests), float(requests_reset), int(token_sum), float(tokens_reset))
        if not admitted:
            raise refusal(limits, reason.decode(), float(wait), headers)
        if limits.concurrency:
            self.running[id] = keys[3]
        return RedisAdmission(self, keys, id, limits, headers)

    async def renew(self) -> None:
        """Extend the leases of the slots this process's running requests hold (and run
        what Redis missed, when no request came to do it)."""
        await self.settle()
        by_key: dict[str, list[str]] = {}
        for id, slots in list(self.running.items()):
            by_key.setdefault(slots, []).append(id)
        for slots, ids in by_key.items():
            await self.shared.quietly(lambda: self.renew_script(keys=[slots], args=[LEASE, KEY_TTL, *ids]))


class RedisThrottle:
    def __init__(self, shared: Shared, name: str, local: LocalThrottle) -> None:
        self.shared, self.name, self.local = shared, name, local
        self.limit, self.window = local.limit, local.window
        self.script = shared.redis.client.register_script(scripts.THROTTLE_TAKE)
        self._mine: dict[str, deque[tuple[str | None, float]]] = {}

    def _key(self, key: str) -> str:
        return self.shared.redis.key("throttle", self.name, key)

    async def take(self, key: str) -> float:
        member = self.shared.unique()
        where: list[str | None] = [member]

        async def take() -> float:
            return float(await self.script(keys=[self._key(key)], args=[self.limit, self.window, member]))

        async def take_here() -> float:
            where[0] = None
            return await self.local.take(key)
        wait = await self.shared.either(take, take_here)
        if not wait:
            self._remember(key, where[0])
        return wait

    def _remember(self, key: str, member: str | None) -> None:
        """The takes of this process that may be given back (None: one the process answered)."""
        now = trio.current_time()
        mine = self._mine.get(key)
        if mine is None:
            if len(self._mine) >= MAX_PENDING:  # (keys whose takes are all past the window go first)
                for stale in [k for k, v in self._mine.items() if v[-1][1] <= now - self.window]:
                    del self._mine[stale]
            mine = self._mine[key] = deque()
        while mine and mine[0][1] <= now - self.window:
            mine.popleft()
        mine.append((member, now))

    async def give_back(self, key: str) -> None:
        """This process's last take of ``key`` did not count: that entry is removed, not
        whichever is newest in the window (another node's, maybe)."""
        mine = self._mine.get(key)
        if not mine:
            return
        member, _ = mine.pop()
        if not mine:
            del self._mine[key]
        if member is None:
            await self.local.give_back(key)
        else:
            await self.shared.quietly(lambda: self.shared.redis.client.zrem(self._key(key), [member]))

    async def clear(self, key: str) -> None:
        await self.shared.either(lambda: self.shared.redis.client.delete([self._key(key)]),
                                 lambda: self.local.clear(key))


class RedisBucket:
    def __init__(self, shared: Shared, name: str, local: LocalBucket) -> None:
        self.shared, self.name, self.local = shared, name, local
        self.take_script = shared.redis.client.register_script(scripts.BUCKET_TAKE)
        self.give_back_script = shared.redis.client.register_script(scripts.BUCKET_GIVE_BACK)

    def _key(self, key: object) -> str:
        return self.shared.redis.key("bucket", self.name, key)

    async def take(self, key: object) -> float:
        async def take() -> float:
            return float(await self.take_script(keys=[self._key(key)], args=[self.local.capacity, self.local.rate]))
        return await self.shared.either(take, lambda: self.local.take(key))

    async def give_back(self, key: object) -> None:
        await self.shared.either(lambda: self.give_back_script(keys=[self._key(key)], args=[self.local.capacity]),
                                 lambda: self.local.give_back(key))


class RedisBackoff:
    def __init__(self, shared: Shared, name: str, local: LocalBackoff) -> None:
        self.shared, self.name, self.local = shared, name, local
        self.script = shared.redis.client.register_script(scripts.BACKOFF_TAKE)

    def _key(self, key: str) -> str:
        return self.shared.redis.key("backoff", self.name, key)

    async def take(self, key: str) -> float:
        async def take() -> float:
            args = [self.local.base, self.local.most, BACKOFF_MEMORY]
            return float(await self.script(keys=[self._key(key)], args=args))
        return await self.shared.either(take, lambda: self.local.take(key))

    async def give_back(self, key: str) -> None:
        await self.shared.either(lambda: self.shared.redis.client.delete([self._key(key)]),
                                 lambda: self.local.give_back(key))


class RedisMemo:
    def __init__(self, shared: Shared, name: str, local: LocalMemo) -> None:
        self.shared, self.name, self.local = shared, name, local

    def _key(self, key: str) -> str:
        return self.shared.redis.key("memo", self.name, key)

    async def add(self, key: str) -> None:
        client = self.shared.redis.client
        await self.shared.either(lambda: client.set(self._key(key), b"1", px=max(int(self.local.ttl * 1000), 1)),
                                 lambda: self.local.add(key))

    async def has(self, key: str) -> bool:
        async def has() -> bool:
            return bool(await self.shared.redis.client.exists([self._key(key)]))
        return await self.shared.either(has, lambda: self.local.has(key))


class RedisLimits:
    """The ``Limits`` of a fleet: each limiter shared through ``redis``, with the
    in-process one of ``local`` answering while Redis does not."""

    def __init__(self, redis: SharedRedis, local: LocalLimits) -> None:
        self.shared, self.local = Shared(redis), local
        self._key_limiters: list[RedisKeyLimiter] = []

    @property
    def redis(self) -> SharedRedis:
        return self.shared.redis

    def key_limiter(self) -> RedisKeyLimiter:
        limiter = RedisKeyLimiter(self.shared, self.local.key_limiter())
        self._key_limiters.append(limiter)
        return limiter

    def throttle(self, name: str, limit: int, window: float) -> RedisThrottle:
        return RedisThrottle(self.shared, name, self.local.throttle(name, limit, window))

    def bucket(self, name: str, per_minute: int) -> RedisBucket:
        return RedisBucket(self.shared, name, self.local.bucket(name, per_minute))

    def backoff(self, name: str, base: float, most: float) -> RedisBackoff:
        return RedisBackoff(self.shared, name, self.local.backoff(name, base, most))

    def memo(self, name: str, ttl: float) -> RedisMemo:
        return RedisMemo(self.shared, name, self.local.memo(name, ttl))

    async def keep(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Renew the leases of the slots this process's running requests hold, every
        ``LEASE / 3`` s, until cancelled; and every second, run the finishes and cancels
        Redis missed as soon as it answers again (a slot it kept for a request answered in
        the process would otherwise refuse the key on every node until the next renewal)."""
        task_status.started()
        renew_at = trio.current_time() + LEASE / 3
        while True:
            await trio.sleep(SETTLE_EVERY)
            if trio.current_time() >= renew_at:
                renew_at = trio.current_time() + LEASE / 3
                for limiter in self._key_limiters:
                    await limiter.renew()
            elif self.redis.up:
                for limiter in self._key_limiters:
                    if limiter.pending:
                        await limiter.settle()
