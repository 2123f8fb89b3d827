-- The marketplace answered 429 and named when to come back: no slot before then, for
-- any caller, and the bucket empty at that time, as SP-API's was when it refused (TAT =
-- then + tolerance: acquire.lua's slot is TAT - tolerance).
-- KEYS[1] limiter hash {tat, rate?}
-- ARGV: configured rate, burst, rate margin, burst reserve, cold start empty (1/0),
--       wait (us), idle ttl (ms)
-- Returns 1 when the next slot moved later.
local key = KEYS[1]
local now = now_us()
local rate = tonumber(redis.call('HGET', key, 'rate') or ARGV[1])
local interval, tol = params(rate, tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
local tat = tonumber(redis.call('HGET', key, 'tat') or '')
if not tat then
  if ARGV[5] == '1' then tat = now + tol + interval else tat = now end
end
local held = now + tonumber(ARGV[6]) + tol
if tat >= held then
  return 0
end
redis.call('HSET', key, 'tat', fmt(held))
redis.call('PEXPIRE', key, fmt(math.ceil((held - now) / 1000) + tonumber(ARGV[7])))
return 1
