-- Lanes offered by a process of an earlier release (in `lanes`, scored by priority band
-- and turn number) move to `passes`, each as if offered now, up to 1,000 a call. Run by
-- every worker of this release at start and every 2 s, so during a rolling upgrade no
-- lane an older API or worker offers waits unseen by the newer workers.
-- ARGV: prefix -> how many lanes moved
local old = redis.call('ZRANGE', P .. 'lanes', 0, 999)
if #old == 0 then return 0 end
for _, acct in ipairs(old) do
  local head = redis.call('ZRANGE', lane_key(acct), 0, 0, 'WITHSCORES')
  if head[2] then offer_lane(acct, tonumber(head[2])) end
end
redis.call('ZREM', P .. 'lanes', unpack(old))
wake()
return #old
