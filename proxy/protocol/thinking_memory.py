"""Where thinking turns are kept between requests, per API key: the ``ThinkingMemory``
protocol and ``ThinkingStore``, its bounded in-process implementation. Pure (the clock
is given)."""

from __future__ import annotations

import time
from collections import OrderedDict
from itertools import count
from typing import Callable, Iterable, Protocol

from .thinking import Lookup, Turn

class ThinkingMemory(Protocol):
    """Where turns are kept between requests, per API key. Async so that a networked
    implementation (Redis) fits; ``ThinkingStore`` is the in-process one.

    ``recall`` answers a batch (``lookup_ids(body)``) so a networked memory needs one
    round trip; ``restore(body, found.get)`` then runs on the answer."""

    async def remember(self, key_id: int, turn: Turn) -> None: ...

    async def recall(self, key_id: int, tool_use_ids: Iterable[str]) -> dict[str, Turn]: ...


class _Entry:
    __slots__ = ("key_id", "turn", "expires")

    def __init__(self, key_id: int, turn: Turn, expires: float) -> None:
        self.key_id = key_id
        self.turn = turn
        self.expires = expires


class ThinkingStore:
    """Bounded in-process memory: (key id, tool_use id) -> Turn.

    A turn is stored once and indexed by each of its tool_use ids; evicting it drops
    all its index entries. Least recently used turns go first when there are more than
    ``max_turns`` or their sizes add up to more than ``max_bytes``. The TTL is sliding:
    a turn expires ``ttl`` seconds after it was last stored or found (so recency order
    is expiry order and expired turns are dropped from the old end). A turn larger
    than ``max_bytes`` is not kept. One key holds at most ``max_turns_per_key`` turns and
    ``max_bytes_per_key`` bytes (its own least recent go first), so a key that loops
    endlessly cannot evict every other key's conversation. Single-threaded (one trio
    loop), like the relay."""

    __slots__ = ("ttl", "max_turns", "max_bytes", "max_turns_per_key", "max_bytes_per_key", "_clock", "_turns",
                 "_index", "_ids", "_by_key", "_key_bytes", "bytes")

    def __init__(self, ttl: float = 3600.0, max_turns: int = 10_000, max_bytes: int = 64 * 1024 * 1024,
                 clock: Callable[[], float] = time.monotonic, max_turns_per_key: int = 1_000,
                 max_bytes_per_key: int = 8 * 1024 * 1024) -> None:
        self.ttl = ttl
        self.max_turns = max_turns
        self.max_bytes = max_bytes
        self.max_turns_per_key = max_turns_per_key
        self.max_bytes_per_key = max_bytes_per_key
        self._clock = clock
        self._turns: OrderedDict[int, _Entry] = OrderedDict()  # entry id -> entry, least recent first
        self._index: dict[tuple[int, str], int] = {}            # (key id, tool_use id) -> entry id
        self._by_key: dict[int, OrderedDict[int, None]] = {}    # key id -> its entry ids, least recent first
        self._key_bytes: dict[int, int] = {}
        self._ids = count()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._turns)

    def put(self, key_id: int, turn: Turn) -> None:
        now = self._clock()
        self._expire(now)
        for tool_use_id in turn.tool_use_ids:  # a re-put replaces the turns it overlaps
            entry_id = self._index.get((key_id, tool_use_id))
            if entry_id is not None:
                self._drop(entry_id)
        if not turn.tool_use_ids or turn.size > min(self.max_bytes, self.max_bytes_per_key) \
                or min(self.max_turns, self.max_turns_per_key) < 1:
            return
        entry_id = next(self._ids)
        self._turns[entry_id] = _Entry(key_id, turn, now + self.ttl)
        self._by_key.setdefault(key_id, OrderedDict())[entry_id] = None
        self._key_bytes[key_id] = self._key_bytes.get(key_id, 0) + turn.size
        self.bytes += turn.size
        for tool_use_id in turn.tool_use_ids:
            self._index[(key_id, tool_use_id)] = entry_id
        own = self._by_key[key_id]
        while len(own) > self.max_turns_per_key or self._key_bytes[key_id] > self.max_bytes_per_key:
            self._drop(next(iter(own)))
        while len(self._turns) > self.max_turns or self.bytes > self.max_bytes:
            self._drop(next(iter(self._turns)))

    def get(self, key_id: int, tool_use_id: str) -> Turn | None:
        now = self._clock()
        self._expire(now)
        entry_id = self._index.get((key_id, tool_use_id))
        if entry_id is None:
            return None
        entry = self._turns[entry_id]
        entry.expires = now + self.ttl
        self._turns.move_to_end(entry_id)
        self._by_key[key_id].move_to_end(entry_id)
        return entry.turn

    def lookup_for(self, key_id: int) -> Lookup:
        """The ``lookup`` ``restore`` takes, limited to this key's turns."""
        return lambda tool_use_id: self.get(key_id, tool_use_id)

    async def remember(self, key_id: int, turn: Turn) -> None:
        self.put(key_id, turn)

    async def recall(self, key_id: int, tool_use_ids: Iterable[str]) -> dict[str, Turn]:
        found = {}
        for tool_use_id in tool_use_ids:
            turn = self.get(key_id, tool_use_id)
            if turn is not None:
                found[tool_use_id] = turn
        return found

    def _expire(self, now: float) -> None:
        while self._turns:
            entry_id, entry = next(iter(self._turns.items()))
            if entry.expires > now:
                return
            self._drop(entry_id)

    def _drop(self, entry_id: int) -> None:
        entry = self._turns.pop(entry_id)
        self.bytes -= entry.turn.size
        own = self._by_key[entry.key_id]
        del own[entry_id]
        self._key_bytes[entry.key_id] -= entry.turn.size
        if not own:
            del self._by_key[entry.key_id], self._key_bytes[entry.key_id]
        for tool_use_id in entry.turn.tool_use_ids:
            if self._index.get((entry.key_id, tool_use_id)) == entry_id:
                del self._index[(entry.key_id, tool_use_id)]
