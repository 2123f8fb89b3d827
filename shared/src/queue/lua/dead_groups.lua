-- Dead-letter groups outside a job's own transitions (common.lua: dead_joined, dead_left).
-- ARGV: prefix, op, ...
--   'backfill', limit: groups up to `limit` dead jobs that have no signature yet (dead
--     before groups were kept), oldest first from where the last call stopped
--     (`dgcur`), until every dead job is grouped (`dgdone`); then adds up to `limit`
--     grouped dead jobs to their account's index of the group (`dgj`, kept since), until
--     each is (`dgjdone`); then counts up to `limit` of them among their account's dead
--     jobs (`dgn`), until each is (`dgndone`); -> 1 once all three are done, else 0.
--   'join', id | 'leave', id: a dead job moved into or out of this queue (a partition
--     migration) -> 1.
-- Any call may answer {'need', keys} instead, writing nothing (common.lua: need).
local op = ARGV[2]
-- The record of each of `ids` with `fields` (the first three: state, error or
-- signature, account), needing the keys of the group `sig_of` names for it (nil: none):
-- nil for a record that was not declared.
local function read_dead(ids, fields, sig_of)
  local out = {}
  for i, id in ipairs(ids) do
    local key = P .. 'job:' .. id
    if need(key) then
      local f = redis.call('HMGET', key, unpack(fields))
      out[i] = f
      local sig = sig_of(f)
      if sig then need_group_keys(sig, f[3]) end
    end
  end
  return out
end
-- the signature a dead job without one joins (from its error), or nil
local function joining(f)
  if f[1] ~= 'dead' or f[4] then return nil end
  return (signature_of(f[2]))
end
if op == 'join' then
  local id = ARGV[3]
  local f = read_dead({id}, {'st', 'er', 'acct', 'sg', 'fa'}, joining)[1]
  if needs then return needs_answer() end
  if f[1] == 'dead' and not f[4] then
    dead_joined(id, f[2], tonumber(f[5]) or now_ms())
  end
  return 1
elseif op == 'leave' then
  read_dead({ARGV[3]}, {'st', 'sg', 'acct'}, function(f) return f[2] or nil end)
  if needs then return needs_answer() end
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
    local jobs = read_dead(ids, {'st', 'er', 'acct', 'sg', 'fa'}, joining)
    if needs then return needs_answer() end
    redis.call('SET', P .. 'dgcur', '(' .. last)
    for i, id in ipairs(ids) do
      local f = jobs[i]
      if f[1] == 'dead' and not f[4] and not redis.call('HGET', P .. 'job:' .. id, 'sg') then
        dead_joined(id, f[2], tonumber(f[5]) or tonumber(last))
      end
    end
    return 0
  end
  redis.call('SET', P .. 'dgdone', 1)
  redis.call('DEL', P .. 'dgcur')
end
-- Then the jobs grouped before each account had its own index of a group (`dgj`) join
-- it, likewise in batches (`dgjcur`), once (`dgjdone`).
if redis.call('EXISTS', P .. 'dgjdone') == 1 then
  -- Last, the dead jobs grouped before the accounts were ranked by their dead jobs
  -- (`dgn`, for the dead cap) are counted there (`dn`), in batches (`dgncur`), once
  -- (`dgndone`).
  if redis.call('EXISTS', P .. 'dgndone') == 1 then return 1 end
  local ids, last = backfill_batch(P .. 'state:dead', P .. 'dgncur', '+inf', limit)
  if not ids then
    redis.call('SET', P .. 'dgndone', 1)
    redis.call('DEL', P .. 'dgncur')
    return 1
  end
  local jobs = read_dead(ids, {'st', 'sg', 'acct', 'dn'}, function() return nil end)
  if needs then return needs_answer() end
  redis.call('SET', P .. 'dgncur', '(' .. last)
  for i, id in ipairs(ids) do
    local f = jobs[i]
    if f[1] == 'dead' and f[2] and f[2] ~= '' and f[3] and f[3] ~= '' and not f[4] then
      redis.call('HSET', P .. 'job:' .. id, 'dn', '1')
      redis.call('ZINCRBY', P .. 'dgn', 1, f[3])
    end
  end
  return 0
end
local ids, last = backfill_batch(P .. 'state:dead', P .. 'dgjcur', '+inf', limit)
if not ids then
  redis.call('SET', P .. 'dgjdone', 1)
  redis.call('DEL', P .. 'dgjcur')
  return 0
end
local jobs = read_dead(ids, {'st', 'sg', 'acct', 'fa'}, function(f) return f[1] == 'dead' and f[2] or nil end)
if needs then return needs_answer() end
redis.call('SET', P .. 'dgjcur', '(' .. last)
for i, id in ipairs(ids) do
  local f = jobs[i]
  if f[1] == 'dead' and f[2] and f[2] ~= '' and f[3] and f[3] ~= '' then
    redis.call('ZADD', P .. 'dgj:' .. f[2] .. ':' .. f[3], tonumber(f[4]) or tonumber(last), id)
  end
end
return 0
