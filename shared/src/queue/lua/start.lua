-- Marks runs as started: a lease whose run never started is handed back without using
-- an attempt when its worker dies (see fetch.lua). A start gives the job its free
-- hand-backs again (`hb`): they are bounded so that a job killing its worker before its
-- start is reported runs out of attempts, and such a job never reports one (before, found
-- by the chaos audit of 2026-12-07, third, they counted over the job's whole life).
-- ARGV: prefix, then pairs id, token -> number of runs marked
local marked = 0
for i = 2, #ARGV, 2 do
  local key = P .. 'job:' .. ARGV[i]
  local f = redis.call('HMGET', key, 'ls', 'hb')
  if f[1] == ARGV[i + 1] then
    redis.call('ZREM', P .. 'unstarted', ARGV[i])
    if f[2] then redis.call('HDEL', key, 'hb') end
    marked = marked + 1
  end
end
return marked
