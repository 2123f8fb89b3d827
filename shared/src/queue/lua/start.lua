-- Marks runs as started: a lease whose run never started is handed back without using
-- an attempt when its worker dies (see fetch.lua).
-- ARGV: prefix, then pairs id, token -> number of runs marked
local marked = 0
for i = 2, #ARGV, 2 do
  local key = P .. 'job:' .. ARGV[i]
  if redis.call('HGET', key, 'ls') == ARGV[i + 1] then
    redis.call('ZREM', P .. 'unstarted', ARGV[i])
    marked = marked + 1
  end
end
return marked
