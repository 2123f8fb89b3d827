-- Upgrades a queue from the layout that indexed queued jobs twice (a `ready` sorted set
-- beside the lanes): the `queued` counter is set to the jobs in the lanes, counted
-- afresh (exact whoever wrote them), and `ready` goes. A queue without `ready` is left
-- as it is. Every account with a queued job is in `lanes` or `blocked`.
-- ARGV: prefix -> 1 if upgraded, else 0
if redis.call('EXISTS', P .. 'ready') == 0 then return 0 end
local n = 0
for _, acct in ipairs(redis.call('ZRANGE', P .. 'lanes', 0, -1)) do
  n = n + redis.call('ZCARD', lane_key(acct))
end
for _, acct in ipairs(redis.call('HKEYS', P .. 'blocked')) do
  if not redis.call('ZSCORE', P .. 'lanes', acct) then
    n = n + redis.call('ZCARD', lane_key(acct))
  end
end
redis.call('SET', P .. 'queued', n)
redis.call('DEL', P .. 'ready')
return 1
