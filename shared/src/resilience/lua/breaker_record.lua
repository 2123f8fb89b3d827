-- Record a call's outcome (breaker.rs: BreakerCore::record).
-- KEYS[1] breaker hash; ARGV: 's' | 'f', window (ms), min calls, failure ratio, open_for (ms), key ttl (ms)
-- Returns {state, until (ms, 0 unless open)}.
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local failed = ARGV[1] == 'f'
local window, min_calls, ratio, open_for = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local h = redis.call('HMGET', key, 'st', 'ws', 'calls', 'fails', 'ou')
local st = h[1] or 'closed'
if st == 'open' then
  -- Calls that were already in flight when it opened change nothing.
  return {'open', tonumber(h[5])}
end
if st == 'half' then
  if failed then
    redis.call('HSET', key, 'st', 'open', 'ou', now + open_for)
    redis.call('HDEL', key, 'pu')
    redis.call('PEXPIRE', key, ARGV[6])
    return {'open', now + open_for}
  end
  redis.call('DEL', key)
  return {'closed', 0}
end
local ws, calls, fails = tonumber(h[2] or ''), tonumber(h[3] or '0'), tonumber(h[4] or '0')
if not ws or now - ws >= window then
  ws, calls, fails = now, 0, 0
end
calls = calls + 1
if failed then fails = fails + 1 end
if calls >= min_calls and fails / calls > ratio then
  redis.call('HSET', key, 'st', 'open', 'ou', now + open_for, 'ws', ws, 'calls', calls, 'fails', fails)
  redis.call('PEXPIRE', key, ARGV[6])
  return {'open', now + open_for}
end
redis.call('HSET', key, 'st', 'closed', 'ws', ws, 'calls', calls, 'fails', fails)
redis.call('PEXPIRE', key, ARGV[6])
return {'closed', 0}
