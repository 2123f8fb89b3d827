-- May a call go? (breaker.rs: BreakerCore::permit)
-- KEYS[1] breaker hash {st = closed|open|half, ws, calls, fails, ou, pu} (ms)
-- ARGV: open_for (ms), key ttl (ms)
-- Returns {1, probe 1/0, the probe's lease end} when allowed, {0, until, probing 1/0}
-- when not. While a probe is out (probing 1), the others are told to look again within
-- PROBE_WAIT: the probe's lease (open_for) is only for a probe that never reports, and
-- its answer usually comes long before.
local PROBE_WAIT = 1000
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local open_for = tonumber(ARGV[1])
local st = redis.call('HGET', key, 'st') or 'closed'
if st == 'closed' then
  return {1, 0}
end
local lease
if st == 'open' then
  lease = tonumber(redis.call('HGET', key, 'ou') or '0')
else
  lease = tonumber(redis.call('HGET', key, 'pu') or '0')
end
if now < lease then
  if st == 'half' then return {0, math.min(lease, now + PROBE_WAIT), 1} end
  return {0, lease, 0}
end
-- This caller is the single probe; the lease lets another probe if it never reports.
local probe_until = now + open_for
redis.call('HSET', key, 'st', 'half', 'pu', probe_until)
redis.call('PEXPIRE', key, ARGV[2])
return {1, 1, probe_until}
