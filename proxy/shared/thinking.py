"""The thinking memory a fleet shares (``ThinkingMemory`` in Redis): a tool loop's next
turn may reach another node, which must find the thinking blocks the first one removed
(proxy/protocol/thinking.py). Chosen in runtime.py when ``redis_url`` is set.

The same rules as the in-process ``ThinkingStore``, from its settings: a turn is stored
once and indexed by each of its tool_use ids; the TTL slides (a turn expires ``ttl``
seconds after it was last stored or found); one API key holds at most
``max_turns_per_key`` turns and ``max_bytes_per_key`` bytes (its least recently used go
first), all keys together ``max_turns`` and ``max_bytes``; a turn larger than the
budget is not kept; a re-put replaces the turns it overlaps. Each operation is one Lua
script (atomic: two nodes never half-evict a turn), one round trip.

Keys, under ``{prefix}thinking:``: per API key ``K``, ``K:t:<turn>`` (the turn, orjson:
its ``Turn.entries``), ``K:i:<tool_use id>`` (the turn's id: its first tool_use id),
``K:lru`` (a sorted set of its turns by last use, a fleet-wide sequence), ``K:at`` (each
turn's last use, ms), ``K:meta`` (each turn's size and ids), ``K:size``; and the fleet's
``lru`` (every ``K:turn``), ``size`` and ``seq``. Expiry is decided by the scripts on
the given clock; Redis's own key expiry (the TTL plus a day) only collects what a fleet
gone quiet left behind. A single Redis (the scripts name keys they compute).

When Redis does not answer (``SharedRedis.up`` false, or a command fails or takes
longer than ``redis_timeout``) the turns go to, and come from, this process's own
``ThinkingStore`` (``failed`` logs it); a recall asks it as well for
what Redis does not have, so turns remembered during an outage are still found here."""

from __future__ import annotations

import json
import time
from typing import Callable, Iterable

import orjson

from ..protocol.thinking import Turn
from ..protocol.thinking_memory import ThinkingStore
from .client import FAILURES, SharedRedis

KEEP_MS = 86_400_000  # Redis's own expiry of every key: the TTL plus this (a day)

_COMMON = """
local P = ARGV[1]
local G, GSIZE = P .. "lru", P .. "size"
local function base(k) return P .. k .. ":" end
local function split(member) return string.match(member, "^(%d+):(.*)$") end

local function drop(k, tid)
  local b = base(k)
  redis.call("ZREM", G, k .. ":" .. tid)
  redis.call("ZREM", b .. "lru", tid)
  redis.call("HDEL", b .. "at", tid)
  local meta = redis.call("HGET", b .. "meta", tid)
  if not meta then return end
  redis.call("HDEL", b .. "meta", tid)
  redis.call("DEL", b .. "t:" .. tid)
  local size = nil
  for part in string.gmatch(meta, "[^%z]+") do
    if size == nil then
      size = tonumber(part)
    elseif redis.call("GET", b .. "i:" .. part) == tid then
      redis.call("DEL", b .. "i:" .. part)
    end
  end
  redis.call("DECRBY", b .. "size", size)
  redis.call("DECRBY", GSIZE, size)
end

local function expired(k, tid, now, ttl)
  return tonumber(redis.call("HGET", base(k) .. "at", tid) or 0) + ttl <= now
end

-- this key's turns unused for ttl, then at most 64 of anyone's (least recent first)
local function sweep(k, now, ttl)
  while true do
    local tid = redis.call("ZRANGE", base(k) .. "lru", 0, 0)[1]
    if not tid or not expired(k, tid, now, ttl) then break end
    drop(k, tid)
  end
  for _ = 1, 64 do
    local member = redis.call("ZRANGE", G, 0, 0)[1]
    if not member then break end
    local other, tid = split(member)
    if not expired(other, tid, now, ttl) then break end
    drop(other, tid)
  end
  -- nothing left: counts start again from zero (whatever Redis's own expiry took meanwhile)
  if redis.call("ZCARD", base(k) .. "lru") == 0 then
    redis.call("DEL", base(k) .. "size", base(k) .. "meta", base(k) .. "at")
  end
  if redis.call("ZCARD", G) == 0 then redis.call("DEL", GSIZE) end
end

local function used(k, tid, now, keep)
  local b = base(k)
  local seq = redis.call("INCR", P .. "seq")
  redis.call("ZADD", b .. "lru", seq, tid)
  redis.call("ZADD", G, seq, k .. ":" .. tid)
  redis.call("HSET", b .. "at", tid, now)
  redis.call("PEXPIRE", b .. "t:" .. tid, keep)
  local meta = redis.call("HGET", b .. "meta", tid)
  local first = true
  for part in string.gmatch(meta, "[^%z]+") do
    if not first then redis.call("PEXPIRE", b .. "i:" .. part, keep) end
    first = false
  end
end

local function kept(k, keep)
  local b = base(k)
  for _, name in ipairs({b .. "lru", b .. "at", b .. "meta", b .. "size", G, GSIZE, P .. "seq"}) do
    redis.call("PEXPIRE", name, keep)
  end
end
"""

# ARGV: prefix, key id, now ms, ttl ms, keep ms, max turns, max bytes, per key turns, per key bytes,
# size, the turn's bytes, its tool_use ids (the first is the turn's id).
_REMEMBER = _COMMON + """
local K, now, ttl, keep = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local max_turns, max_bytes = tonumber(ARGV[6]), tonumber(ARGV[7])
local key_turns, key_bytes = tonumber(ARGV[8]), tonumber(ARGV[9])
local size, blob = tonumber(ARGV[10]), ARGV[11]
local b = base(K)
sweep(K, now, ttl)
for i = 12, #ARGV do  -- a re-put replaces the turns it overlaps
  local old = redis.call("GET", b .. "i:" .. ARGV[i])
  if old then drop(K, old) end
end
if size > math.min(max_bytes, key_bytes) or math.min(max_turns, key_turns) < 1 then
  return 0
end
local tid = ARGV[12]
local meta = tostring(size)
redis.call("SET", b .. "t:" .. tid, blob, "PX", keep)
for i = 12, #ARGV do
  redis.call("SET", b .. "i:" .. ARGV[i], tid, "PX", keep)
  meta = meta .. "\\0" .. ARGV[i]
end
redis.call("HSET", b .. "meta", tid, meta)
redis.call("INCRBY", b .. "size", size)
redis.call("INCRBY", GSIZE, size)
used(K, tid, now, keep)
while redis.call("ZCARD", b .. "lru") > key_turns or tonumber(redis.call("GET", b .. "size")) > key_bytes do
  drop(K, redis.call("ZRANGE", b .. "lru", 0, 0)[1])
end
while redis.call("ZCARD", G) > max_turns or tonumber(redis.call("GET", GSIZE)) > max_bytes do
  local other, old = split(redis.call("ZRANGE", G, 0, 0)[1])
  drop(other, old)
end
kept(K, keep)
return 1
"""

# ARGV: prefix, key id, now ms, ttl ms, keep ms, the tool_use ids asked for.
# Returns {{id, turn id, ...}, {turn id, bytes, ...}}.
_RECALL = _COMMON + """
local K, now, ttl, keep = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local b = base(K)
sweep(K, now, ttl)
local ids, turns, seen = {}, {}, {}
for i = 6, #ARGV do
  local tid = redis.call("GET", b .. "i:" .. ARGV[i])
  if tid and redis.call("HEXISTS", b .. "meta", tid) == 1 then
    if not seen[tid] then
      local blob = redis.call("GET", b .. "t:" .. tid)
      if blob then
        seen[tid] = true
        table.insert(turns, tid)
        table.insert(turns, blob)
        used(K, tid, now, keep)
      end
    end
    if seen[tid] then
      table.insert(ids, ARGV[i])
      table.insert(ids, tid)
    end
  end
end
if #turns > 0 then kept(K, keep) end
return {ids, turns}
"""


def _keyable(tool_use_id: str) -> bool:
    """Whether an id can be part of a Redis key and of a turn's meta (NUL-separated)."""
    if "\0" in tool_use_id:
        return False
    try:
        tool_use_id.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def encode(turn: Turn) -> bytes:
    try:
        return orjson.dumps(turn.entries())
    except TypeError:  # a lone surrogate orjson will not write: the stdlib's \u escapes keep it
        return turn.to_json()


def decode(data: bytes) -> Turn | None:
    """The turn ``encode`` wrote; None for anything else (another version's, or written by
    someone with access to Redis): a turn not found."""
    try:
        try:
            entries = orjson.loads(data)
        except orjson.JSONDecodeError:
            entries = json.loads(data)
    except ValueError:
        return None
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("placeholder", e.get("type")), str) for e in entries):
        return None
    return Turn.from_entries(entries)


class SharedThinking:
    """``ThinkingMemory`` in the fleet's Redis, with ``local`` (a ``ThinkingStore``, whose
    settings it takes) as the fallback while Redis does not answer. ``clock``: unix time
    (tests turn it by hand)."""

    def __init__(self, shared: SharedRedis, local: ThinkingStore | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.shared = shared
        self.local = local if local is not None else ThinkingStore()
        self.clock = clock
        self.prefix = shared.key("thinking", "")
        self._remember = shared.client.register_script(_REMEMBER)
        self._recall = shared.client.register_script(_RECALL)

    def _head(self, key_id: int) -> list:
        local = self.local
        return [self.prefix, key_id, int(self.clock() * 1000), int(local.ttl * 1000), int(local.ttl * 1000) + KEEP_MS]

    async def remember(self, key_id: int, turn: Turn) -> None:
        ids = turn.tool_use_ids
        if self.shared.up and ids and all(map(_keyable, ids)):
            local = self.local
            try:
                await self.shared.run(lambda: self._remember(args=[
                    *self._head(key_id), local.max_turns, local.max_bytes, local.max_turns_per_key,
                    local.max_bytes_per_key, turn.size, encode(turn), *ids]))
                return
            except FAILURES:
                pass  # (Redis marked down: this process's memory meanwhile)
        await self.local.remember(key_id, turn)

    async def recall(self, key_id: int, tool_use_ids: Iterable[str]) -> dict[str, Turn]:
        wanted = list(dict.fromkeys(tool_use_ids))  # (a client's ids Redis cannot name were never stored there)
        asked = [i for i in wanted if _keyable(i)]
        found: dict[str, Turn] = {}
        if self.shared.up and asked:
            try:
                pairs, blobs = await self.shared.run(lambda: self._recall(args=[*self._head(key_id), *asked]))
            except FAILURES:
                pass  # (Redis marked down: only this process's memory)
            else:
                turns = {blobs[i]: decode(blobs[i + 1]) for i in range(0, len(blobs), 2)}
                found = {pairs[i].decode(): turns[pairs[i + 1]] for i in range(0, len(pairs), 2)
                         if turns.get(pairs[i + 1]) is not None}
        missing = [i for i in wanted if i not in found]
        if missing and len(self.local):  # turns kept here while Redis was away
            found.update(await self.local.recall(key_id, missing))
        return found
