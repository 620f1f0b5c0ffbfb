"""The Lua scripts of the Redis store: each runs atomically on the server.

Time is integer microseconds: the server's `TIME` unless the caller passes its own (tests
that drive time by hand), exact in Lua's doubles for any date this century.

A bucket's history is two sorted sets, the minute window and the day window, each with a
running token sum beside it. A member is `<seq>:<tokens>` scored by its admission time;
`seq` comes from one counter, so members never collide. A charge is recorded in the day
set only while the bucket has a day limit (a day of entries is a real cost otherwise).

Only plain commands, no modules and no functions, so Valkey runs the same scripts.
"""

from __future__ import annotations

__all__ = [
    "ACQUIRE",
    "CANCEL",
    "COMMIT",
    "COOLDOWN",
    "COOLDOWNS_LEFT",
    "INDEX_IF_ABSENT",
    "PEEK",
    "ROTATE",
]

#: The shared head of every script that reads the clock.
_NOW = """
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

#: What ACQUIRE and PEEK share: the clock, the two spans, the request's tokens and how to
#: read a member's tokens.
_CHECK_HEAD = (
    _NOW
    + """
local MINUTE, DAY = 60000000, 86400000000
local tokens = tonumber(ARGV[2])
"""
)

_COST_OF = """
local function cost_of(member)
  return tonumber(string.match(member, ':(%d+)$'))
end
"""


def _free_at(needs: str, page: str) -> str:
    """Lua `free_at(set, sum, max_req, max_tok, span)`: when the window has room for one
    more request (0: it has room now).

    `needs` sets `need_req` and `need_tok`, how many of the oldest requests and tokens must
    leave first; `page` is the call that reads the window's next 100 members from `start`,
    oldest first, with their scores.
    """
    return (
        """
local function free_at(set, sum, max_req, max_tok, span)
"""
        + needs
        + """
  if need_req <= 0 and need_tok <= 0 then return 0 end
  local seen, freed, t, start = 0, 0, now, 0
  while true do
    local page = """
        + page
        + """
    if #page == 0 then break end
    for i = 1, #page, 2 do
      seen = seen + 1
      freed = freed + cost_of(page[i])
      t = tonumber(page[i + 1])
      if seen >= need_req and freed >= need_tok then return t + span end
    end
    start = start + 100
  end
  return t + span
end
"""
    )


def _wait_for_buckets(never: str) -> str:
    """Lua that sets `until_`, when every bucket has room (0: now), returning `never` when
    a bucket can never admit the request. Uses the script's own `prune` and `free_at`."""
    return (
        """
local until_ = 0
for i = 0, n - 1 do
  local rpm, tpm = tonumber(ARGV[3 + 4 * i]), tonumber(ARGV[4 + 4 * i])
  local rpd, tpd = tonumber(ARGV[5 + 4 * i]), tonumber(ARGV[6 + 4 * i])
  if rpm == 0 or rpd == 0 or (tpm >= 0 and tokens > tpm) or (tpd >= 0 and tokens > tpd) then
    return """
        + never
        + """
  end
  local base = 4 * i
  prune(KEYS[base + 1], KEYS[base + 2], now - MINUTE)
  if rpm >= 0 or tpm >= 0 then
    until_ = math.max(until_, free_at(KEYS[base + 1], KEYS[base + 2], rpm, tpm, MINUTE))
  end
  if rpd >= 0 or tpd >= 0 then
    prune(KEYS[base + 3], KEYS[base + 4], now - DAY)
    until_ = math.max(until_, free_at(KEYS[base + 3], KEYS[base + 4], rpd, tpd, DAY))
  end
end
"""
    )


#: KEYS: per bucket (minute set, minute sum, day set, day sum), then the sequence counter.
#: ARGV: caller's now ('' for the server's), tokens, then per bucket rpm, tpm, rpd, tpd
#: (-1: no limit). Returns {0, member} when admitted, else {1, wait in us} (-1: never).
ACQUIRE = (
    _CHECK_HEAD
    + """
local n = (#KEYS - 1) / 4
"""
    + _COST_OF
    + """
-- A Lua number becomes a command argument through "%.14g": times are formatted exactly.
local function prune(set, sum, cutoff)
  cutoff = string.format('%.0f', cutoff)
  local gone = redis.call('ZRANGEBYSCORE', set, '-inf', cutoff)
  if #gone > 0 then
    local freed = 0
    for _, member in ipairs(gone) do freed = freed + cost_of(member) end
    redis.call('ZREMRANGEBYSCORE', set, '-inf', cutoff)
    redis.call('DECRBY', sum, freed)
  end
end
"""
    + _free_at(
        needs="""
  local need_req, need_tok = 0, 0
  if max_req >= 0 then need_req = redis.call('ZCARD', set) - max_req + 1 end
  if max_tok >= 0 then
    need_tok = tonumber(redis.call('GET', sum) or '0') + tokens - max_tok
  end
""",
        page="redis.call('ZRANGE', set, start, start + 99, 'WITHSCORES')",
    )
    + _wait_for_buckets(never="{1, -1}")
    + """
if until_ > 0 then return {1, math.max(until_ - now, 1)} end

local at = string.format('%.0f', now)
local seq = redis.call('INCR', KEYS[#KEYS])
-- Outlives every member: a day set lives a day after its last charge.
redis.call('PEXPIRE', KEYS[#KEYS], 2 * DAY / 1000)
local member = seq .. ':' .. tokens
for i = 0, n - 1 do
  local base = 4 * i
  redis.call('ZADD', KEYS[base + 1], at, member)
  redis.call('INCRBY', KEYS[base + 2], tokens)
  redis.call('PEXPIRE', KEYS[base + 1], MINUTE / 1000 + 1000)
  redis.call('PEXPIRE', KEYS[base + 2], MINUTE / 1000 + 1000)
  if tonumber(ARGV[5 + 4 * i]) >= 0 or tonumber(ARGV[6 + 4 * i]) >= 0 then
    redis.call('ZADD', KEYS[base + 3], at, member)
    redis.call('INCRBY', KEYS[base + 4], tokens)
    redis.call('PEXPIRE', KEYS[base + 3], DAY / 1000 + 1000)
    redis.call('PEXPIRE', KEYS[base + 4], DAY / 1000 + 1000)
  end
end
return {0, member}
"""
)

#: ACQUIRE's check without its charge and without pruning: reads only, so a dry run leaves
#: nothing another process could see. Members at or before the cutoff have left the window
#: (ACQUIRE would prune them); they are subtracted instead of removed.
#: KEYS, ARGV: as ACQUIRE, without the sequence counter. Returns the wait in us (0: fits
#: now, -1: never).
PEEK = (
    _CHECK_HEAD
    + """
local n = #KEYS / 4
"""
    + _COST_OF
    + """
-- Removes nothing: free_at looks past what has left the window instead.
local function prune(set, sum, cutoff) end
"""
    + _free_at(
        needs="""
  local cutoff = string.format('%.0f', now - span)
  local gone, gone_tokens = redis.call('ZRANGEBYSCORE', set, '-inf', cutoff), 0
  for _, member in ipairs(gone) do gone_tokens = gone_tokens + cost_of(member) end
  local need_req, need_tok = 0, 0
  if max_req >= 0 then
    need_req = redis.call('ZCOUNT', set, '(' .. cutoff, '+inf') - max_req + 1
  end
  if max_tok >= 0 then
    local used = tonumber(redis.call('GET', sum) or '0') - gone_tokens
    need_tok = used + tokens - max_tok
  end
""",
        page="""redis.call(
      'ZRANGEBYSCORE', set, '(' .. cutoff, '+inf', 'WITHSCORES', 'LIMIT', start, 100)""",
    )
    + _wait_for_buckets(never="-1")
    + """
if until_ > 0 then return math.max(until_ - now, 1) end
return 0
"""
)

#: KEYS: (set, sum) pairs of every window the charge may be in. ARGV: member, new tokens.
#: A window the charge has left (expired, or never entered) is not touched.
COMMIT = """
local member, tokens = ARGV[1], tonumber(ARGV[2])
local seq, old = string.match(member, '^(%d+):(%d+)$')
local renamed = seq .. ':' .. tokens
if renamed == member then return member end
for i = 1, #KEYS, 2 do
  local score = redis.call('ZSCORE', KEYS[i], member)
  if score then
    -- Add before removing: a set never empties here, so it keeps its expiry.
    redis.call('ZADD', KEYS[i], score, renamed)
    redis.call('ZREM', KEYS[i], member)
    redis.call('INCRBY', KEYS[i + 1], tokens - tonumber(old))
  end
end
return renamed
"""

#: KEYS: (set, sum) pairs. ARGV: member. Gives the charge back wherever it still counts.
CANCEL = """
local member = ARGV[1]
local tokens = tonumber(string.match(member, ':(%d+)$'))
for i = 1, #KEYS, 2 do
  if redis.call('ZREM', KEYS[i], member) == 1 then
    redis.call('DECRBY', KEYS[i + 1], tokens)
  end
end
return 0
"""

#: KEYS: the cooldowns hash. ARGV: caller's now, name, seconds in us.
#: A cooldown only ever grows; the hash lives as long as its longest cooldown.
COOLDOWN = (
    _NOW
    + """
local until_ = now + tonumber(ARGV[3])
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[2]) or '0')
if until_ > old then
  redis.call('HSET', KEYS[1], ARGV[2], string.format('%.0f', until_))
  local ttl = math.floor((until_ - now) / 1000) + 1000
  if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
end
-- Forget the ones that ended, so the hash stays as small as what is cooling.
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) <= now then redis.call('HDEL', KEYS[1], all[i]) end
end
return 0
"""
)

#: KEYS: the indexes hash. ARGV: provider, number of keys, seconds to keep the index.
ROTATE = """
local n = tonumber(ARGV[2])
local index = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if n > 0 then index = index % n else index = 0 end
redis.call('HSET', KEYS[1], ARGV[1], index + 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return index
"""

#: KEYS: the indexes hash. ARGV: provider, index, seconds to keep the index.
#: Returns the index the hash holds for the provider: the one given unless one was there.
INDEX_IF_ABSENT = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
"""

#: KEYS: the cooldowns hash. ARGV: caller's now, then names. Returns us left per name.
COOLDOWNS_LEFT = (
    _NOW
    + """
local left = {}
for i = 2, #ARGV do
  local until_ = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  left[i - 1] = math.max(until_ - now, 0)
end
return left
"""
)
