-- Lanes offered by a process of an earlier release (in `lanes`, scored by priority band
-- and turn number) move to `passes`, each as if offered now, up to 1,000 a call. Run by
-- every worker of this release at start and every 2 s, so during a rolling upgrade no
-- lane an older API or worker offers waits unseen by the newer workers.
-- KEYS: the queue's keys offering a lane touches, and the lanes of the accounts the
-- caller read ahead from `lanes`.
-- ARGV: prefix -> how many lanes moved, or -1 when `lanes` names an account whose lane
-- was not declared (nothing written: the caller reads again)
local old = redis.call('ZRANGE', P .. 'lanes', 0, 999)
if #old == 0 then return 0 end
for _, acct in ipairs(old) do
  if not declared(lane_key(acct)) then return -1 end
end
for _, acct in ipairs(old) do
  local head = redis.call('ZRANGE', lane_key(acct), 0, 0, 'WITHSCORES')
  if head[2] then offer_lane(acct, tonumber(head[2])) end
end
redis.call('ZREM', P .. 'lanes', unpack(old))
wake()
return #old
