-- The account's active cooldown, or nil.
-- KEYS[1] cooldown hash. Returns {until, reason, level, since} or nil.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'until', 'reason', 'level', 'since')
local until_ms = tonumber(h[1] or '')
if until_ms and until_ms > now then
  return {until_ms, h[2], tonumber(h[3]), tonumber(h[4])}
end
return false
