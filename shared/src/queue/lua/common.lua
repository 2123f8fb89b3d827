-- Shared helpers, prepended to every script. Every key of a queue starts with the
-- prefix `drover:{<kind>}:` so all of them hash to one Cluster slot; KEYS[1] is always
-- one of them so a Cluster client routes the call to that slot.
local P = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Higher priority first, then oldest first. Priorities are 0..9.
local function ready_score(priority, at)
  return (9 - tonumber(priority or 0)) * 10000000000000 + at
end
local function wake()
  if redis.call('LLEN', P .. 'marker') == 0 then
    redis.call('LPUSH', P .. 'marker', '1')
  end
end
-- Only sync jobs hold a per-account slot.
local EXCLUSIVE = string.find(P, '{sync}', 1, true) ~= nil
local function release_exclusive(id, acct)
  if EXCLUSIVE and acct and acct ~= '' then
    local k = P .. 'excl:' .. acct
    if redis.call('GET', k) == id then
      redis.call('DEL', k)
    end
  end
end
-- Moves a job into a terminal state, keeping the indexes right.
-- Moves a job into a terminal state; the caller adds it to the state index (in bulk
-- where it can).
local function finish_fields(id, state, now, field, value)
  local key = P .. 'job:' .. id
  redis.call('HSET', key, 'st', state, 'ua', now, 'fa', now, 'ls', '', field, value)
  if EXCLUSIVE then
    release_exclusive(id, redis.call('HGET', key, 'acct'))
  end
end
local function finish(id, state, now, field, value)
  finish_fields(id, state, now, field, value)
  redis.call('ZADD', P .. 'state:' .. state, now, id)
end
-- Back to the ready set. A job handed back (its worker died or shut down) goes to
-- the front of its priority band, ordered by creation time, instead of behind the
-- whole backlog: it has waited once already.
local function queue_ready(id, now, front)
  local key = P .. 'job:' .. id
  local f = redis.call('HMGET', key, 'pr', 'ca')
  local at = now
  if front then at = tonumber(f[2]) or now end
  redis.call('HSET', key, 'st', 'queued', 'ua', now)
  redis.call('ZADD', P .. 'ready', ready_score(f[1], at), id)
end
