-- Renews the leases a live worker holds and tells it which of its jobs were cancelled
-- and which leases it no longer holds. With no pairs it is a live worker's beat on a
-- queue where it holds no lease: Redis notes that it served the queue (a reclaim tells
-- a dead holder from an outage by the gaps, see note_served).
-- ARGV: prefix, lease_ms, then pairs id, token -> {lost ids, cancel ids}
local lease_ms = tonumber(ARGV[2])
local now = now_ms()
note_served(now)
local deadline_s = string.format('%.0f', now + lease_ms)
local lost, cancel = {}, {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', P .. 'job:' .. id, 'ls', 'cx', 'sx')
  if f[1] ~= token then
    lost[#lost + 1] = id
  else
    redis.call('ZADD', P .. 'active', 'XX', deadline_s, id)
    -- renewed in time: a reclaim pass that marked it suspect (see fetch) forgets it
    if f[3] and f[3] ~= '' then redis.call('HSET', P .. 'job:' .. id, 'sx', '') end
    if f[2] == '1' then cancel[#cancel + 1] = id end
  end
end
-- A lease that ran out (its holder died) waits for a fetch to reclaim it: wake an idle
-- fetcher, which would otherwise sleep out its own wait (up to the idle wait, 5 s).
if redis.call('ZRANGE', P .. 'active', '-inf', now, 'BYSCORE', 'LIMIT', 0, 1)[1] then wake() end
return {lost, cancel}
