-- Deletes terminal jobs: those named (purge), or, for retention, the oldest of `state`
-- that ended more than `retention_ms` ago (by Redis time) or that exceed `keep_max`
-- (0: no cap), at most `limit` per call.
-- KEYS: the state's index and the kind's other indexes, then the keys of the jobs the
-- caller read ahead (the ids named, or the index's oldest `limit`): each job's record,
-- history, items and deliveries, its account's index and counts, its dead-letter
-- group's keys. A job met whose keys were not all declared ends the call there.
-- ARGV: prefix, state, retention_ms, limit, keep_max, ids... -> {removed, left}: `left`
-- is how many more were due for removal than this call took (the backlog; with ids
-- named, how many of them it did not reach).
local state, retention, limit, keep_max = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local ids = {}
local left = 0
if #ARGV > 5 then
  for i = 6, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  local index = P .. 'state:' .. state
  local due = redis.call('ZCOUNT', index, '-inf', now_ms() - retention)
  if keep_max > 0 then
    due = math.max(due, redis.call('ZCARD', index) - keep_max)
  end
  if due > limit then
    left = due - limit
    due = limit
  end
  if due > 0 then
    ids = redis.call('ZRANGE', index, 0, due - 1)
  end
end
local removed = 0
-- whether every key of the job `key` (its fields `f`) was declared
local function all_declared(key, f)
  if not declared(key) then return false end
  if f[2] and not declared(P .. 'acct:' .. f[2]) then return false end
  return not (f[4] and f[4] ~= '' and not declared(P .. 'dg:' .. f[4]))
end
for i, id in ipairs(ids) do
  local key = P .. 'job:' .. id
  local f = declared(key) and redis.call('HMGET', key, 'st', 'acct', 'ac', 'sg')
  if not f or (f[1] == state and not all_declared(key, f)) then
    left = left + #ids - i + 1
    break
  end
  if f[1] == state then
    -- Removals first: at Redis's memory limit a script run without flags (the EVALSHA
    -- fallback) is refused at its first write that may grow memory unless it has
    -- written already; the function itself carries allow-oom.
    if f[2] then redis.call('ZREM', P .. 'acct:' .. f[2], id) end
    if state == 'dead' then dead_left(id) end
    if f[3] == '1' then tally(f[2], state, -1) end
    redis.call('DEL', key, P .. 'attempts:' .. id, P .. 'items:' .. id, P .. 'callbacks:' .. id)
    redis.call('ZREM', P .. 'cbdue', id)
    redis.call('ZREM', P .. 'all', id)
    redis.call('ZREM', P .. 'state:' .. state, id)
    removed = removed + 1
  elseif not f[1] then
    -- a stale index entry: its record is gone already
    redis.call('ZREM', P .. 'state:' .. state, id)
  end
end
return {removed, left}
