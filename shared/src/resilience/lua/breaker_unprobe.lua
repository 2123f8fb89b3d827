-- A half-open probe its caller never sent is handed back (breaker.rs: `unprobe`), so
-- the next caller probes at once rather than after the probe's lease (open_for).
-- KEYS[1] breaker hash; ARGV[1] the probe's lease end (ms), as its permit gave it.
-- Returns 1 when handed back, 0 when the breaker moved on meanwhile (another probe,
-- an answer, a close).
local key = KEYS[1]
if redis.call('HGET', key, 'st') == 'half' and tonumber(redis.call('HGET', key, 'pu') or '0') == tonumber(ARGV[1]) then
  redis.call('HSET', key, 'pu', 0)
  return 1
end
return 0
