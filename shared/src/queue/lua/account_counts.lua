-- Per-account counts by state outside a job's own moves (common.lua: tally, recount).
-- ARGV: prefix, op, ...
--   'backfill', limit: counts up to `limit` jobs made before the counts were kept (no
--     `ac`), in creation order from where the last call stopped (`accur`), up to the
--     newest job when the backfill began (`acend`); -> 1 once every such job is counted
--     (`acdone`), else 0.
--   'join', id | 'leave', id: a job moved into or out of this queue (a partition
--     migration) -> 1.
-- Any call may answer {'need', keys} instead, writing nothing (common.lua: need).
local op = ARGV[2]
-- needs the counts of the accounts of jobs read (`f[2]`: the account)
local function need_counts(f)
  if f[2] and f[2] ~= '' then need(P .. 'as:' .. f[2]) end
end
if op == 'join' or op == 'leave' then
  local key = P .. 'job:' .. ARGV[3]
  if not need(key) then return needs_answer() end
  local f = redis.call('HMGET', key, 'st', 'acct', 'ac')
  need_counts(f)
  if needs then return needs_answer() end
  if op == 'leave' then
    if f[3] == '1' then tally(f[2], f[1], -1) end
  else
    recount(key, f[2], f[3], nil, f[1])
  end
  return 1
elseif op ~= 'backfill' then
  return redis.error_reply('unknown op ' .. tostring(op))
end
if redis.call('EXISTS', P .. 'acdone') == 1 then return 1 end
local limit = tonumber(ARGV[3])
local index = P .. 'all'
local last_ms = redis.call('GET', P .. 'acend')
if not last_ms then
  local newest = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  last_ms = newest[2] or '0'
  redis.call('SET', P .. 'acend', last_ms)
end
local ids, last = backfill_batch(index, P .. 'accur', last_ms, limit)
if not ids then
  redis.call('SET', P .. 'acdone', 1)
  redis.call('DEL', P .. 'accur', P .. 'acend')
  return 1
end
local jobs = {}
for i, id in ipairs(ids) do
  local key = P .. 'job:' .. id
  if need(key) then
    jobs[i] = redis.call('HMGET', key, 'st', 'acct', 'ac')
    need_counts(jobs[i])
  end
end
if needs then return needs_answer() end
redis.call('SET', P .. 'accur', '(' .. last)
-- (a batch names the members at its last score twice: each is counted once)
local counted = {}
for i, id in ipairs(ids) do
  local f = jobs[i]
  if f[1] and f[3] ~= '1' and f[2] and f[2] ~= '' and not counted[id] then
    counted[id] = true
    redis.call('HSET', P .. 'job:' .. id, 'ac', '1')
    tally(f[2], f[1], 1)
  end
end
return 0
