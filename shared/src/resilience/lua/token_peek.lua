-- The shared access token, its remaining life, whether someone is refreshing it, and
-- the refreshes that failed lately.
-- KEYS[1] token, KEYS[2] refresh lock, KEYS[3] failed refreshes (a hash: n, last).
-- Returns {token or '', pttl ms, lock held 1/0, failed refreshes, the last one's error}.
local failed = redis.call('HMGET', KEYS[3], 'n', 'last')
local n, last = tonumber(failed[1]) or 0, failed[2] or ''
local v = redis.call('GET', KEYS[1])
local held = redis.call('EXISTS', KEYS[2])
if not v then
  return {'', 0, held, n, last}
end
return {v, redis.call('PTTL', KEYS[1]), held, n, last}
