-- ARGV: prefix, id, account (the one its KEYS were named for; absent from a caller of
-- the previous release) -> 'missing' | 'cancelled' | 'requested' | 'terminal:<state>' |
-- 'again' (the job's account is not the one named: nothing written)
local id = ARGV[2]
local key = P .. 'job:' .. id
local f = redis.call('HMGET', key, 'st', 'acct')
local st = f[1]
if not st then return 'missing' end
if ARGV[3] and (f[2] or '') ~= ARGV[3] then return 'again' end
local now = now_ms()
if st == 'queued' or st == 'scheduled' or st == 'retrying' then
  remove_ready(id, f[2])
  redis.call('ZREM', P .. 'scheduled', id)
  redis.call('ZREM', P .. 'retrying', id)
  if st == 'scheduled' then
    for _, r in ipairs(PARK_REASONS) do redis.call('ZREM', P .. 'parked:' .. r, id) end
  end
  -- A job that has run (waiting to retry, parked, given way) was cancelled before it ran
  -- again (the API audit of 2026-12-07, second: it said "before it ran" beside its runs;
  -- its history says whether it ran, the attempt count not: a snooze gives one back). A
  -- lease handed back from a dead worker's prefetch is no run (the review of the fix).
  local ran, runs = false, P .. 'attempts:' .. id
  for i = 1, math.min(redis.call('LLEN', runs), 20) do
    if not string.find(redis.call('LINDEX', runs, -i), 'before the run started', 1, true) then
      ran = true
      break
    end
  end
  local said = ran and 'cancelled before it ran again' or 'cancelled before it ran'
  finish(id, 'cancelled', now, 'er', '{"class":"cancelled","message":"' .. said .. '"}', redis.call('HGET', key, 'cb'))
  return 'cancelled'
elseif st == 'running' then
  redis.call('HSET', key, 'cx', '1', 'ua', now)
  return 'requested'
end
return 'terminal:' .. st
