-- Deletes terminal jobs: those named (purge), or those in `state` older than the cutoff
-- (retention), at most `limit` per call.
-- ARGV: prefix, state, cutoff_ms, limit, ids... -> number removed
local state, cutoff, limit = ARGV[2], ARGV[3], tonumber(ARGV[4])
local ids = {}
if #ARGV > 4 then
  for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGEBYSCORE', P .. 'state:' .. state, '-inf', cutoff, 'LIMIT', 0, limit)
end
local removed = 0
for _, id in ipairs(ids) do
  local key = P .. 'job:' .. id
  local f = redis.call('HMGET', key, 'st', 'acct')
  if f[1] == state then
    if f[2] then redis.call('ZREM', P .. 'acct:' .. f[2], id) end
    redis.call('DEL', key, P .. 'attempts:' .. id, P .. 'items:' .. id)
    redis.call('ZREM', P .. 'all', id)
    redis.call('ZREM', P .. 'state:' .. state, id)
    removed = removed + 1
  end
end
return removed
