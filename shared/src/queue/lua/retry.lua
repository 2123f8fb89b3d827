-- Puts a dead, cancelled or partial job back in the queue with a fresh attempt budget.
-- ARGV: prefix, id, exclusive, then what its KEYS were named for (absent from a caller
-- of the previous release): account, the account's exclusive holder, dead-letter
-- signature ('' for none), '1' to requeue it only while it is dead (the dead letter's
-- replay), and the sync of its marketplace made beside the holder (`exclm:<account>`)
-- -> 'queued' | 'missing' | 'state:<state>' | 'busy:<holder id>' | 'again' (one of those
--    is not what was named: nothing written)
local id, exclusive = ARGV[2], ARGV[3]
local key = P .. 'job:' .. id
local st = redis.call('HGET', key, 'st')
if not st then return 'missing' end
if st ~= 'dead' and (ARGV[7] == '1' or (st ~= 'cancelled' and st ~= 'partial')) then return 'state:' .. st end
local acct, counted, at, ma, budget, sig = unpack(redis.call('HMGET', key, 'acct', 'ac', 'at', 'ma', 'mb', 'sg'))
local named = ARGV[4] ~= nil
if named and ((acct or '') ~= ARGV[4] or (sig or '') ~= ARGV[6]) then return 'again' end
if exclusive == '1' and acct and acct ~= '' then
  local ekey = P .. 'excl:' .. acct
  local holder = redis.call('GET', ekey)
  if named and (holder or '') ~= ARGV[5] then return 'again' end
  if holder and holder ~= id and sync_under_way(holder) then
    return 'busy:' .. holder
  end
  -- nor beside its marketplace's sync made beside another's (before, found by the review
  -- of the eighth stop of 2026-12-07, it was brought back beside it: two under way)
  if ARGV[8] ~= nil then
    local beside = redis.call('HGET', P .. 'exclm:' .. acct, marketplace_of(payload_table(redis.call('HGET', key, 'p'))))
    if (beside or '') ~= ARGV[8] then return 'again' end
    if beside and beside ~= id and sync_under_way(beside) then
      return 'busy:' .. beside
    end
  end
  redis.call('SET', ekey, id)
end
local now = now_ms()
-- Run numbers go on from the newest run's, also when the life before ended with its
-- attempt given back (a snooze or a hand-back that a cancel ended lowered `at`): no run
-- of the new life shares a number with one of the last (a backfill's failed windows
-- name the attempt that failed them).
local newest = redis.call('LINDEX', P .. 'attempts:' .. id, -1)
if newest then
  local ok, rec = pcall(cjson.decode, newest)
  local number = ok and type(rec) == 'table' and tonumber(rec.number)
  if number and number > (tonumber(at) or 0) then
    at = number
    redis.call('HSET', key, 'at', at)
  end
end
if st == 'dead' then dead_left(id) end
recount(key, acct, counted, st, 'queued')
redis.call('ZREM', P .. 'state:' .. st, id)
-- Its own budget of attempts again (`mb`: the max_attempts it was enqueued with, kept
-- at its first replay) on top of the runs it has had: run numbers go on, so no two runs
-- of its history share a number.
if not budget then
  budget = ma
  redis.call('HSET', key, 'mb', budget)
end
-- How this life ended, kept for the record (the fields below are cleared): its state,
-- end, error and what made it (`pe`, the latest replay's).
local ending = redis.call('HMGET', key, 'fa', 'er', 'tg')
local before = {state = st, finished_ms = tonumber(ending[1])}
if ending[3] and ending[3] ~= '' then before.trigger = ending[3] end
if ending[2] and ending[2] ~= '' then
  local ok, e = pcall(cjson.decode, ending[2])
  if ok and type(e) == 'table' then before.error = e end
end
redis.call('HSET', key, 'ma', (tonumber(at) or 0) + (tonumber(budget) or 1), 'tg', 'replay',
  'pe', cjson.encode(before))
-- a fresh life: no stale error, progress, result, due time, start, snooze count or turn
-- given away
redis.call('HDEL', key, 'fa', 'cx', 'ls', 'w', 'rs', 'er', 'pg', 'ra', 'sa', 'sn', 'sx', 'hb', 'gw')
-- its callback waits for the new ending, unless the last ending's delivery is still on
-- its way (that one is delivered as it was)
if redis.call('HGET', key, 'cbx') ~= 'pending' then
  redis.call('HDEL', key, 'cbx', 'cbw')
end
queue_ready(id, now)
wake()
return 'queued'
