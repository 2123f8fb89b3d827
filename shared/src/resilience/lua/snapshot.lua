-- Everything about one account at one server instant.
-- KEYS: the n limiter hashes, the n breaker hashes, the cooldown hash (in that order);
-- ARGV[1] = n, the number of operations.
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
local n = tonumber(ARGV[1])
for i = 1, n do
  add(redis.call('HMGET', KEYS[i], 'tat', 'rate'))
end
for i = n + 1, 2 * n do
  add(redis.call('HMGET', KEYS[i], 'st', 'ws', 'calls', 'fails', 'ou', 'pu'))
end
add(redis.call('HMGET', KEYS[2 * n + 1], 'until', 'reason', 'level', 'since'))
return out
