"""Anti-abuse throttles in the process: at most ``limit`` events per key (an IP, a
username) in any ``window`` seconds, on a sliding window. ``take`` checks and records in
one step (no await between them), so concurrent attempts cannot all pass the check."""

from __future__ import annotations

from collections import deque
from typing import Callable

MAX_KEYS = 100_000  # beyond this many keys, the ones with nothing in their window are dropped


class LocalThrottle:
    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._events: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float] | None:
        events = self._events.get(key)
        if events is not None:
            while events and events[0] <= now - self.window:
                events.popleft()
            if not events:
                del self._events[key]
                return None
        return events

    async def take(self, key: str) -> float:
        now = self.clock()
        events = self._recent(key, now)
        if events is not None and len(events) >= self.limit:
            return max(events[len(events) - self.limit] + self.window - now, 0.001)
        if events is None:
            if len(self._events) >= MAX_KEYS:
                for stale in list(self._events):
                    self._recent(stale, now)
            events = self._events[key] = deque()
        events.append(now)
        return 0.0

    async def give_back(self, key: str) -> None:
        events = self._events.get(key)
        if events:
            events.pop()
            if not events:
                del self._events[key]

    async def clear(self, key: str) -> None:
        self._events.pop(key, None)
