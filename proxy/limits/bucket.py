"""A token bucket per key, in the process: ``per_minute`` events a minute, in bursts of
that many (the reseller transfer API's limit)."""

from __future__ import annotations

from typing import Callable


class LocalBucket:
    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.buckets: dict[object, tuple[float, float]] = {}  # key -> (tokens, when)

    async def take(self, key: object) -> float:
        now = self.clock()
        tokens, when = self.buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - when) * self.rate)
        if tokens >= 1:
            self.buckets[key] = (tokens - 1, now)
            return 0.0
        self.buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate if self.rate else 60.0

    async def give_back(self, key: object) -> None:
        tokens, when = self.buckets.get(key, (self.capacity, self.clock()))
        self.buckets[key] = (min(self.capacity, tokens + 1), when)
