-- Dead-letter groups outside a job's own transitions (common.lua: dead_joined, dead_left).
-- ARGV: prefix, op, ...
--   'backfill', limit: groups up to `limit` dead jobs that have no signature yet (dead
--     before groups were kept), oldest first from where the last call stopped
--     (`dgcur`), until every dead job is grouped (`dgdone`); then adds up to `limit`
--     grouped dead jobs to their account's index of the group (`dgj`, kept since), until
--     each is (`dgjdone`); -> 1 once both are done, else 0.
--   'join', id | 'leave', id: a dead job moved into or out of this queue (a partition
--     migration) -> 1.
local op = ARGV[2]
if op == 'join' then
  local id = ARGV[3]
  local f = redis.call('HMGET', P .. 'job:' .. id, 'st', 'er', 'fa', 'sg')
  if f[1] == 'dead' and not f[4] then
    dead_joined(id, f[2], tonumber(f[3]) or now_ms())
  end
  return 1
elseif op == 'leave' then
  dead_left(ARGV[3])
  return 1
elseif op ~= 'backfill' then
  return redis.error_reply('unknown op ' .. tostring(op))
end
local limit = tonumber(ARGV[3])
if redis.call('EXISTS', P .. 'dgdone') == 0 then
  -- (`last`: the batch's last death ms, for a record without `fa`)
  local ids, last = backfill_batch(P .. 'state:dead', P .. 'dgcur', '+inf', limit)
  if ids then
    for _, id in ipairs(ids) do
      local f = redis.call('HMGET', P .. 'job:' .. id, 'st', 'er', 'fa', 'sg')
      if f[1] == 'dead' and not f[4] then
        dead_joined(id, f[2], tonumber(f[3]) or tonumber(last))
      end
    end
    return 0
  end
  redis.call('SET', P .. 'dgdone', 1)
  redis.call('DEL', P .. 'dgcur')
end
-- Then the jobs grouped before each account had its own index of a group (`dgj`) join
-- it, likewise in batches (`dgjcur`), once (`dgjdone`).
if redis.call('EXISTS', P .. 'dgjdone') == 1 then return 1 end
local ids, last = backfill_batch(P .. 'state:dead', P .. 'dgjcur', '+inf', limit)
if not ids then
  redis.call('SET', P .. 'dgjdone', 1)
  redis.call('DEL', P .. 'dgjcur')
  return 1
end
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', P .. 'job:' .. id, 'st', 'sg', 'acct', 'fa')
  if f[1] == 'dead' and f[2] and f[2] ~= '' and f[3] and f[3] ~= '' then
    redis.call('ZADD', P .. 'dgj:' .. f[2] .. ':' .. f[3], tonumber(f[4]) or tonumber(last), id)
  end
end
return 0
