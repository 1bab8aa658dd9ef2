"""The Lua scripts behind the shared limiters (shared/limits.py): each check-and-record
is one script, atomic in Redis, on Redis's own clock (``TIME``), so the nodes' clocks
do not matter and concurrent nodes cannot pass a check together. Times are Unix
seconds (floats: ``tostring`` of the numbers, since Redis truncates a Lua number it
returns to an integer). Every key a script writes gets a TTL.

The semantics are those of the in-process limiters (limits/keys.py, throttle.py,
bucket.py, backoff.py), line for line where it matters: read those first."""

from __future__ import annotations

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
"""

# A key's limits. KEYS: requests (zset id -> admitted at), token times (zset id -> at),
# tokens (hash id -> tokens, 'sum' -> their sum), slots (zset id -> lease expiry).
# ARGV: id, rpm, tpm, concurrency, reserve, window, lease, ttl.
# -> {1 admitted | 0 refused, reason, wait, requests in window, requests reset, token sum, tokens reset}
ADMIT = _NOW + """
local id, rpm, tpm, slots = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local reserve, window, lease, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local horizon = now - window
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', horizon)
local sum = tonumber(redis.call('HGET', KEYS[3], 'sum') or '0')
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', horizon)
for _, member in ipairs(gone) do
  sum = sum - tonumber(redis.call('HGET', KEYS[3], member) or '0')
  redis.call('HDEL', KEYS[3], member)
end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', horizon) end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local requests = redis.call('ZCARD', KEYS[1])
local reason, wait = '', 0
-- The same admission sent again (a resend after a dropped connection): admitted once, not refused by itself.
local again = (slots > 0 and redis.call('ZSCORE', KEYS[4], id)) or (rpm > 0 and redis.call('ZSCORE', KEYS[1], id))
  or (tpm > 0 and redis.call('HEXISTS', KEYS[3], id) == 1)
if again then
  reason = ''
elseif slots > 0 and redis.call('ZCARD', KEYS[4]) >= slots then
  reason, wait = 'concurrency', 1
elseif rpm > 0 and requests >= rpm then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  reason, wait = 'rpm', tonumber(first[2]) + window - now
elseif tpm > 0 and sum + reserve > tpm then
  reason, wait = 'tpm', window
  local used = sum
  local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    used = used - tonumber(redis.call('HGET', KEYS[3], entries[i]) or '0')
    if used + reserve <= tpm then
      wait = math.max(tonumber(entries[i + 1]) + window - now, 0)
      break
    end
  end
end
if reason == '' and not again then
  if rpm > 0 then
    redis.call('ZADD', KEYS[1], now, id)
    redis.call('EXPIRE', KEYS[1], ttl)
    requests = requests + 1
  end
  if tpm > 0 then
    redis.call('ZADD', KEYS[2], now, id)
    redis.call('HSET', KEYS[3], id, reserve)
    sum = sum + reserve
    redis.call('EXPIRE', KEYS[2], ttl)
  end
  if slots > 0 then
    redis.call('ZADD', KEYS[4], now + lease, id)
    redis.call('EXPIRE', KEYS[4], ttl)
  end
end
if tpm > 0 or #gone > 0 then
  redis.call('HSET', KEYS[3], 'sum', sum)
  redis.call('EXPIRE', KEYS[3], ttl)
end
local requests_reset, tokens_reset = now, now
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first > 0 then requests_reset = tonumber(first[2]) + window end
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if #last > 0 then tokens_reset = tonumber(last[2]) + window end
return {reason == '' and 1 or 0, reason, tostring(wait), requests, tostring(requests_reset), sum,
        tostring(tokens_reset)}
"""

# The request is over: its tokens (if still in the window) become what it used; its slot
# is free. KEYS as ADMIT's; ARGV: id, tokens used.
FINISH = """
local reserved = redis.call('HGET', KEYS[3], ARGV[1])
if reserved then
  local sum = tonumber(redis.call('HGET', KEYS[3], 'sum') or '0') + tonumber(ARGV[2]) - tonumber(reserved)
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2], 'sum', sum)
end
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
"""

# The request never reached the upstream: it counts for nothing. KEYS as ADMIT's; ARGV: id.
CANCEL = """
redis.call('ZREM', KEYS[1], ARGV[1])
local reserved = redis.call('HGET', KEYS[3], ARGV[1])
if reserved then
  local sum = tonumber(redis.call('HGET', KEYS[3], 'sum') or '0') - tonumber(reserved)
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('HSET', KEYS[3], 'sum', sum)
  redis.call('ZREM', KEYS[2], ARGV[1])
end
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
"""

# The slots of requests still running on this node live on. KEYS: slots; ARGV: lease, ttl, ids...
# (XX: a slot already freed, or expired, is not brought back.)
RENEW = _NOW + """
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

# A throttle. KEYS: events (zset member -> at); ARGV: limit, window, member.
# -> '0' (taken) or the seconds until there is room.
THROTTLE_TAKE = _NOW + """
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n > 0 and n >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
  return tostring(math.max(tonumber(oldest[2]) + window - now, 0.001))
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
return '0'
"""

# A token bucket. KEYS: bucket (hash tokens, when); ARGV: capacity, rate per second.
BUCKET_TAKE = _NOW + """
local capacity, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'when')
local tokens, when = tonumber(state[1]) or capacity, tonumber(state[2]) or now
tokens = math.min(capacity, tokens + (now - when) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
elseif rate > 0 then
  wait = (1 - tokens) / rate
else
  wait = 60
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'when', string.format('%.6f', now))
local full = 60
if rate > 0 then full = capacity / rate end
redis.call('PEXPIRE', KEYS[1], math.ceil(full * 1000) + 1000)
return tostring(wait)
"""

# The token last taken did not count; a bucket gone (full) stays full. KEYS: bucket; ARGV: capacity.
BUCKET_GIVE_BACK = """
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens'))
if tokens then
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', math.min(tonumber(ARGV[1]), tokens + 1)))
end
return 1
"""

# Progressive delays. KEYS: state (hash failures, ready); ARGV: base, most, memory (the
# seconds a key's failures are remembered after its last one: the process forgets them
# only under memory pressure, Redis after this).
BACKOFF_TAKE = _NOW + """
local base, most = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'failures', 'ready')
local failures, ready = tonumber(state[1]) or 0, tonumber(state[2]) or 0
if ready > now then return tostring(ready - now) end
failures = failures + 1
local delay = 0
if failures > 1 then delay = math.min(base * 2 ^ math.min(failures - 2, 60), most) end
redis.call('HSET', KEYS[1], 'failures', failures, 'ready', string.format('%.6f', now + delay))
redis.call('PEXPIRE', KEYS[1], math.ceil((delay + tonumber(ARGV[3])) * 1000))
return '0'
"""
