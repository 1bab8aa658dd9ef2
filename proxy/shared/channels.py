"""The upstream channels' rests shared by a fleet: a channel cooling for an upstream
429/529, or whose circuit opened, on one node rests on every node within a second.

Why polling a hash rather than pub/sub: the router's health (upstream/health.py) is a
pure state machine changed synchronously in the request path, and a missed pub/sub
message (a reconnect) would be lost for good. So one task per process compares, every
``INTERVAL`` s, each channel's health with what it was at the previous round, and in one
script (``SYNC``, on Redis's clock) writes its new rests to a hash and reads back every
node's; a rest it has not applied yet is applied to its own health. A rest is a time
"until" (kept in Redis's clock; each node converts it to its own), so the nodes' clocks
do not matter, and applying one only ever lengthens a rest (``max``), so the order of
the nodes' rounds does not either. Cost: one round trip per process every 0.5 s,
whatever the traffic.

A rest that ends early on a node (the operator enabled the channel, or a request
succeeded through the circuit) is removed from the hash when it is still the one that
node saw, so a node that starts later does not take it up; the other nodes get the
operator's enable from the store themselves (upstream/operator.py). While Redis is down
each node's channels rest on their own, as without ``redis_url``.
"""

from __future__ import annotations

import math

import trio

from ..upstream.health import ChannelHealth
from ..upstream.router import Router
from .limits import FAILURES, RedisLimits, Shared

INTERVAL = 0.5
TTL = 3600  # seconds the hash outlives its last write (a rest is at most max_cooldown / open_max)

# KEYS: the hash (fields "<channel>|cool", "|by", "|open", "|opened"); ARGV: ttl, then
# groups of four: op, channel, value, extra. -> {Redis's now, the hash's fields and values...}
SYNC = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local wrote = false
for i = 2, #ARGV, 4 do
  local op, name, value, extra = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  if op == 'cool' or op == 'open' then
    local until_ = now + value
    if until_ > tonumber(redis.call('HGET', KEYS[1], name .. '|' .. op) or '0') then
      local count = op == 'cool' and '|by' or '|opened'
      redis.call('HSET', KEYS[1], name .. '|' .. op, string.format('%.6f', until_), name .. count, extra)
      wrote = true
    end
  else
    local field = op == 'uncool' and 'cool' or 'open'
    if redis.call('HGET', KEYS[1], name .. '|' .. field) == ARGV[i + 2] then
      redis.call('HDEL', KEYS[1], name .. '|' .. field)
    end
  end
end
if wrote then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local answer = redis.call('HGETALL', KEYS[1])
table.insert(answer, 1, string.format('%.6f', now))
return answer
"""


def _number(raw: bytes | None) -> float | None:
    """A field of the hash as a finite number; None for none or anything else (written by
    another version, or by someone with access to Redis: never a rest of forever)."""
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


class SharedHealth:
    """One process's side of the exchange, for its ``router``."""

    def __init__(self, shared: Shared, router: Router) -> None:
        self.shared, self.router = shared, router
        self.script = shared.redis.client.register_script(SYNC)
        self.key = shared.redis.key("channels")
        self._was: dict[str, tuple[float, float, int]] = {}  # channel -> (cooling_until, open_until, opened)
        self._seen: dict[str, dict[str, bytes | None]] = {}  # channel -> the fields last read

    async def round(self) -> None:
        """Publish this node's new rests, apply the others'."""
        now = trio.current_time()
        ops: list[object] = []
        published: dict[str, tuple[float, float, int]] = {}  # (what the ops say; a change meanwhile is the next round's)
        for channel in self.router.channels:
            health = self.router.state.health(channel.name)
            ops += self._changes(channel.name, channel.rested_by, health, now)
            published[channel.name] = (health.cooling_until, health.open_until, health.opened)
        if not self.shared.redis.up:
            return
        try:
            answer = await self.shared.call(lambda: self.script(keys=[self.key], args=[TTL, *ops]))
        except FAILURES:
            return
        redis_now, fields = float(answer[0]), answer[1:]
        remote = {fields[i].decode(): fields[i + 1] for i in range(0, len(fields), 2)}
        now = trio.current_time()
        for channel in self.router.channels:
            health = self.router.state.health(channel.name)
            cooling, open_, opened = published[channel.name]
            by, cooled, opened_here = self._apply(channel.name, health, remote, now, now - redis_now)
            if cooled:
                cooling, channel.rested_by = health.cooling_until, by or channel.rested_by
            if opened_here:
                open_, opened = health.open_until, health.opened
            self._was[channel.name] = (cooling, open_, opened)

    def _changes(self, name: str, rested_by: int | None, health: ChannelHealth, now: float) -> list[object]:
        cooling, open_, opened = self._was.get(name, (0.0, 0.0, 0))
        seen = self._seen.get(name, {})
        ops: list[object] = []
        if health.cooling_until > max(cooling, now):
            ops += ["cool", name, health.cooling_until - now, rested_by or 0]
        elif health.cooling_until < cooling and seen.get("cool"):
            ops += ["uncool", name, seen["cool"], 0]
        if health.opened and health.open_until > max(open_, now):
            ops += ["open", name, health.open_until - now, health.opened]
        elif opened and not health.opened and seen.get("open"):
            ops += ["unopen", name, seen["open"], 0]
        return ops

    def _apply(self, name: str, health: ChannelHealth, remote: dict[str, bytes], now: float,
               offset: float) -> tuple[int | None, bool, bool]:
        """Take up the rests of ``name`` this node has not seen yet (``offset``: Redis's
        clock to this node's): (the status that rests it, whether a cooldown was taken
        up, whether an open circuit was)."""
        seen = self._seen.setdefault(name, {})
        by, cooled, opened = None, False, False
        for field in ("cool", "open"):
            raw = remote.get(f"{name}|{field}")
            if raw == seen.get(field):
                continue
            seen[field] = raw
            until = _number(raw)
            if until is None:  # (none, or not a time this code wrote)
                continue
            until += offset
            if until <= now:
                continue
            if field == "cool" and until > health.cooling_until:
                health.cooling_until, cooled = until, True
                by = int(_number(remote.get(f"{name}|by")) or 0) or None
            elif field == "open" and until > health.open_until and not health.probing:
                health.open_until = until
                health.opened = max(health.opened, int(_number(remote.get(f"{name}|opened")) or 1), 1)
                health.failures, health.failing_requests = 0, ()
                opened = True
        return by, cooled, opened

    async def run(self, interval: float = INTERVAL, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self.round()
            await trio.sleep(interval)


async def keep_shared(limits: RedisLimits, upstream: object) -> None:
    """What a fleet's process does in the background: renew its requests' concurrency
    slots, and share its channels' rests (when its upstream is a router)."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(limits.keep)
        if isinstance(upstream, Router):
            nursery.start_soon(SharedHealth(Shared(limits.redis), upstream).run)  # (its own count of calls)
