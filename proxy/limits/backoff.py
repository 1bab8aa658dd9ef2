"""Progressive delays after failures, and a memory of keys seen, in the process
(limits/base.py's Backoff and Memo). Like the throttles, ``take`` checks and records in
one step (no await between them), so concurrent attempts of one key cannot all pass."""

from __future__ import annotations

from typing import Callable

MAX_KEYS = 100_000  # beyond this many keys, the ones whose delay or memory is over are dropped


class LocalBackoff:
    def __init__(self, base: float, most: float, clock: Callable[[], float]) -> None:
        self.base, self.most, self.clock = base, most, clock
        self._state: dict[str, tuple[int, float]] = {}  # key -> (failures in a row, next attempt at)

    def delay(self, failures: int) -> float:
        """After the first failure none (a typo); after the n-th, base x 2^(n-2)."""
        return 0.0 if failures <= 1 else min(self.base * 2 ** min(failures - 2, 60), self.most)

    async def take(self, key: str) -> float:
        now = self.clock()
        failures, ready_at = self._state.get(key, (0, 0.0))
        if ready_at > now:
            return ready_at - now
        if len(self._state) >= MAX_KEYS:
            self._drop_ready(now)
        failures += 1
        self._state[key] = (failures, now + self.delay(failures))
        return 0.0

    async def give_back(self, key: str) -> None:
        self._state.pop(key, None)

    def _drop_ready(self, now: float) -> None:
        for stale in [k for k, (_, at) in self._state.items() if at + self.most <= now]:
            del self._state[stale]


class LocalMemo:
    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self.ttl, self.clock = ttl, clock
        self._until: dict[str, float] = {}

    async def add(self, key: str) -> None:
        now = self.clock()
        if key not in self._until and len(self._until) >= MAX_KEYS:
            for stale in [k for k, until in self._until.items() if until <= now]:
                del self._until[stale]
            if len(self._until) >= MAX_KEYS:  # all live: forget the one that ends soonest
                del self._until[min(self._until, key=self._until.__getitem__)]
        self._until[key] = now + self.ttl

    async def has(self, key: str) -> bool:
        until = self._until.get(key)
        if until is not None and until <= self.clock():
            del self._until[key]
            return False
        return until is not None
