-- Renews the leases a live worker holds and tells it which of its jobs were cancelled
-- and which leases it no longer holds.
-- ARGV: prefix, lease_ms, then pairs id, token -> {lost ids, cancel ids}
local lease_ms = tonumber(ARGV[2])
local now = now_ms()
local lost, cancel = {}, {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', P .. 'job:' .. id, 'ls', 'cx')
  if f[1] ~= token then
    lost[#lost + 1] = id
  else
    redis.call('ZADD', P .. 'active', 'XX', now + lease_ms, id)
    if f[2] == '1' then cancel[#cancel + 1] = id end
  end
end
return {lost, cancel}
