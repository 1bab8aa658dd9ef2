"""Anti-abuse throttles: at most ``limit`` events per key (an IP, a username) in any
``window`` seconds, on a sliding window. In the process, like the transfer API's
limiter: each gateway process keeps its own counts."""

from __future__ import annotations

from collections import deque
from typing import Callable

MAX_KEYS = 100_000  # beyond this many keys, the ones with nothing in their window are dropped


class Throttle:
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

    def wait(self, key: str) -> float:
        """0 when another event is allowed now; else the seconds until it is."""
        now = self.clock()
        events = self._recent(key, now)
        if events is None or len(events) < self.limit:
            return 0.0
        return max(events[len(events) - self.limit] + self.window - now, 0.001)

    def note(self, key: str) -> None:
        now = self.clock()
        if len(self._events) >= MAX_KEYS:
            for stale in list(self._events):
                self._recent(stale, now)
        self._events.setdefault(key, deque()).append(now)

    def clear(self, key: str) -> None:
        self._events.pop(key, None)
