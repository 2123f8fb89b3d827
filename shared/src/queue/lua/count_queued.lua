-- Upgrades a queue from the layout that indexed queued jobs twice (a `ready` sorted set
-- beside the lanes): the `queued` counter is set to the jobs in the lanes, counted
-- afresh (exact whoever wrote them), and `ready` goes. A queue without `ready` is left
-- as it is. Every account with a queued job is in `passes`, `lanes` (where releases
-- before the weighted turns offered it) or `blocked`.
-- KEYS: `ready`, `passes`, `lanes`, `blocked`, `queued`, and the lanes of the accounts
-- the caller read ahead from those three.
-- ARGV: prefix -> 1 if upgraded, 0 if there was nothing to upgrade, -1 when an account
-- with queued jobs has a lane that was not declared (nothing written: the caller reads
-- again)
if redis.call('EXISTS', P .. 'ready') == 0 then return 0 end
local n, seen, unknown = 0, {}, false
local function count(acct)
  if not seen[acct] then
    seen[acct] = true
    if declared(lane_key(acct)) then
      n = n + redis.call('ZCARD', lane_key(acct))
    else
      unknown = true
    end
  end
end
for _, acct in ipairs(redis.call('ZRANGE', P .. 'passes', 0, -1)) do count(acct) end
for _, acct in ipairs(redis.call('ZRANGE', P .. 'lanes', 0, -1)) do count(acct) end
for _, acct in ipairs(redis.call('HKEYS', P .. 'blocked')) do count(acct) end
if unknown then return -1 end
redis.call('SET', P .. 'queued', n)
redis.call('DEL', P .. 'ready')
return 1
