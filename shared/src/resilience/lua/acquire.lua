-- Reserve the next GCRA slot (gcra.rs: reserve).
-- KEYS[1] limiter hash {tat, rate?}
-- ARGV: configured rate, burst, rate margin, burst reserve, cold start empty (1/0),
--       max wait (us), idle ttl (ms)
-- Returns {granted 1/0, wait_us as string}.
local key = KEYS[1]
local now = now_us()
local rate = tonumber(redis.call('HGET', key, 'rate') or ARGV[1])
local interval, tol = params(rate, tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
local tat = tonumber(redis.call('HGET', key, 'tat') or '')
local cold = not tat
if cold then
  if ARGV[5] == '1' then tat = now + tol + interval else tat = now end
end
local slot = math.max(now, tat - tol)
local wait = slot - now
if wait > tonumber(ARGV[6]) then
  -- A bucket with no record starts now: keep that start, so a caller that comes back
  -- after `wait` finds its slot rather than a whole interval again (gcra.rs: reserve).
  if cold then
    redis.call('HSET', key, 'tat', fmt(tat))
    redis.call('PEXPIRE', key, fmt(math.ceil((tat - now) / 1000) + tonumber(ARGV[7])))
  end
  return {0, fmt(wait)}
end
local new_tat = math.max(tat, now) + interval
redis.call('HSET', key, 'tat', fmt(new_tat))
redis.call('PEXPIRE', key, fmt(math.ceil((new_tat - now) / 1000) + tonumber(ARGV[7])))
return {1, fmt(wait)}
