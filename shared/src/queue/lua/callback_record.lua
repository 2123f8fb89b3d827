-- Records one try of a callback delivery on the job (history: the newest 20 tries)
-- and, while the try's claim is still the current one, what comes next: the next try
-- at `next_ms` from now, or the end of the delivery (`delivered` or `failed`).
-- ARGV: prefix, id, token, record json, next_ms (-1: no more tries), status
-- -> 'ok' | 'stale' (the claim had run out: history only) | 'missing'
local id, token, rec, next_ms, status = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local key = P .. 'job:' .. id
if redis.call('EXISTS', key) == 0 then return 'missing' end
local hist = P .. 'callbacks:' .. id
if redis.call('RPUSH', hist, rec) > 20 then
  redis.call('LTRIM', hist, -20, -1)
end
if redis.call('HGET', key, 'cbl') ~= token then return 'stale' end
local now = now_ms()
if next_ms < 0 then
  redis.call('ZREM', P .. 'cbdue', id)
  redis.call('HSET', key, 'cbl', '', 'cbx', status, 'cbw', '')
  callback_next(id, now)
else
  redis.call('ZADD', P .. 'cbdue', now + next_ms, id)
  redis.call('HSET', key, 'cbl', '', 'cbx', 'pending', 'cbw', now + next_ms)
end
return 'ok'
