"""The in-process implementation of every limiter (limits/base.py): exact on one node,
each gateway process keeping its own counts."""

from __future__ import annotations

import time
from typing import Callable

from .backoff import LocalBackoff, LocalMemo
from .bucket import LocalBucket
from .keys import Limiter
from .throttle import LocalThrottle


class LocalLimits:
    """``clock``: monotonic seconds (trio's, so tests can mock it); ``wall``: Unix seconds."""

    def __init__(self, clock: Callable[[], float], wall: Callable[[], float] = time.time) -> None:
        self.clock, self.wall = clock, wall

    def key_limiter(self) -> Limiter:
        return Limiter(self.clock, self.wall)

    def throttle(self, name: str, limit: int, window: float) -> LocalThrottle:
        return LocalThrottle(limit, window, self.clock)

    def bucket(self, name: str, per_minute: int) -> LocalBucket:
        return LocalBucket(per_minute, self.clock)

    def backoff(self, name: str, base: float, most: float) -> LocalBackoff:
        return LocalBackoff(base, most, self.clock)

    def memo(self, name: str, ttl: float) -> LocalMemo:
        return LocalMemo(ttl, self.clock)
