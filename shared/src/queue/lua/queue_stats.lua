-- What /metrics shows beyond the plain counts: jobs parked per guard, jobs held back by
-- their account's cap, and the event counters of `P stats`. Every read is O(1) or
-- O(log n), except `account_busy`, which adds up the lanes of the accounts at their cap:
-- at most BUSY_LANES of them (each holds at least one run in flight, so there are no
-- more than the runs in flight); past that it extrapolates from a sample.
-- ARGV: prefix -> {parked rate_limit, parked quota_cooldown, parked breaker_open,
--                  account_busy jobs, reclaimed_lost, reclaimed_released, late,
--                  parks: rate_limit, quota_cooldown, breaker_open}
local BUSY_LANES = 1000
local out = {}
for _, r in ipairs(PARK_REASONS) do
  out[#out + 1] = redis.call('ZCARD', P .. 'parked:' .. r)
end
local blocked = redis.call('HLEN', P .. 'blocked')
local busy = 0
if blocked > 0 then
  local accts = redis.call('HRANDFIELD', P .. 'blocked', math.min(blocked, BUSY_LANES))
  for _, acct in ipairs(accts) do
    busy = busy + redis.call('ZCARD', lane_key(acct))
  end
  if blocked > #accts then busy = math.floor(busy * blocked / #accts) end
end
out[#out + 1] = busy
local s = redis.call('HMGET', P .. 'stats', 'reclaimed_lost', 'reclaimed_released', 'late',
  'parked:rate_limit', 'parked:quota_cooldown', 'parked:breaker_open')
for i = 1, #s do out[#out + 1] = tonumber(s[i]) or 0 end
return out
