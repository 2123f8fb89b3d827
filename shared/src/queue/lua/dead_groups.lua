-- Dead-letter groups outside a job's own transitions (common.lua: dead_joined, dead_left).
-- ARGV: prefix, op, ...
--   'backfill', limit: groups up to `limit` dead jobs that have no signature yet (dead
--     before groups were kept), oldest first from where the last call stopped
--     (`dgcur`); -> 1 once every dead job is grouped (`dgdone`), else 0.
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
if redis.call('EXISTS', P .. 'dgdone') == 1 then return 1 end
local limit = tonumber(ARGV[3])
-- (`last`: the batch's last death ms, for a record without `fa`)
local ids, last = backfill_batch(P .. 'state:dead', P .. 'dgcur', '+inf', limit)
if not ids then
  redis.call('SET', P .. 'dgdone', 1)
  redis.call('DEL', P .. 'dgcur')
  return 1
end
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', P .. 'job:' .. id, 'st', 'er', 'fa', 'sg')
  if f[1] == 'dead' and not f[4] then
    dead_joined(id, f[2], tonumber(f[3]) or tonumber(last))
  end
end
return 0
