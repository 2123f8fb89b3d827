-- Everything about one account at one server instant.
-- KEYS: the six limiter hashes, the six breaker hashes, the cooldown hash (in that order).
-- Returns a flat list: now (us), then per limiter {tat, rate}, per breaker
-- {st, ws, calls, fails, ou, pu}, then the cooldown {until, reason, level, since};
-- missing fields come back as nil.
local t = redis.call('TIME')
local out = {string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))}
local function add(vals)
  for i = 1, #vals do
    out[#out + 1] = vals[i]
  end
end
for i = 1, 6 do
  add(redis.call('HMGET', KEYS[i], 'tat', 'rate'))
end
for i = 7, 12 do
  add(redis.call('HMGET', KEYS[i], 'st', 'ws', 'calls', 'fails', 'ou', 'pu'))
end
add(redis.call('HMGET', KEYS[13], 'until', 'reason', 'level', 'since'))
return out
