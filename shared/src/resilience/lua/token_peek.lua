-- The shared access token, its remaining life and whether someone is refreshing it.
-- KEYS[1] token, KEYS[2] refresh lock. Returns {token or '', pttl ms, lock held 1/0}.
local v = redis.call('GET', KEYS[1])
local held = redis.call('EXISTS', KEYS[2])
if not v then
  return {'', 0, held}
end
return {v, redis.call('PTTL', KEYS[1]), held}
