-- Applies the outcome of finished runs, each only while the worker still holds the
-- lease; a late outcome is kept on the attempt history and changes nothing else.
-- ARGV: prefix, n, max_snoozes, then n times: id, token, outcome, delay_ms, attempt, data
-- attempt: the run's record as JSON, '' for none, or `=<ended_ms>[:<trace id>]` for a
-- run that succeeded on its lease (number, worker and start are the token's,
-- `<worker>:<number>:<started_ms>`): a success that ends the job keeps it in the job's
-- hash as `la` instead of on the history list (docs/architecture.md, "Redis layout").
-- outcome: succeeded | partial | retry | snooze | snooze_advanced | snooze_held |
-- gave_way | dead | cancelled | release (snooze_advanced: a snooze of a run that did some
-- of its work, whose job's count of snoozes starts again from this one; snooze_held: a
-- snooze that waited on another run's breaker probe, which leaves the count as it was)
-- A cancel requested during the run wins over retry, snooze, gave_way and release: the
-- job ends cancelled instead of running again. A snooze past `max_snoozes` ends the job
-- dead; gave_way (a run that worked its turn or slice) is a snooze that is not counted.
-- -> list of 'ok' | 'as:<state>' (ended otherwise than asked) | 'lost' | 'gone' (no
-- record: nothing written)
local n, max_snoozes = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local out = {}
local done = 0
local released = {}
local by_state = {}
-- the runs that ended, per account: their holds and counters are written once at the end
local ended = {}
-- the accounts one of whose runs was handed back (its lane goes to the front)
local handed = {}
defer_tallies()
local CANCELLED = '{"class":"cancelled","message":"cancelled while it ran"}'
local CANCELLED_UNSTARTED = '{"class":"cancelled","message":"cancelled before it started"}'
-- A lease token's worker, run number and start (`<worker>:<number>:<started_ms>`).
local TOKEN = '^(.*):(%d+):(%d+)$'
-- The whole record of a success kept short (`[=]<ended_ms>[:<trace id>]`).
local function success_json(short, worker, number, started)
  local ended, trace = string.match(short, '^=?(%d+):?(.*)$')
  local a = {number = tonumber(number), worker = worker, started_ms = tonumber(started),
    ended_ms = tonumber(ended), outcome = 'succeeded'}
  if trace ~= '' then a.trace_id = trace end
  return cjson.encode(a)
end
-- A late record joins the history after the success that ended the job, so that one
-- moves from the hash to the list first.
local function push_late(id, key, attempt)
  local last = redis.call('HMGET', key, 'la', 'w', 'at', 'sa')
  if last[1] then
    push_attempt(id, success_json(last[1], last[2] or '', last[3] or '1', last[4] or '0'))
    redis.call('HDEL', key, 'la')
  end
  push_attempt(id, '{"late":true,' .. string.sub(attempt, 2))
  -- the history changed: a reader that re-reads on a change sees it
  redis.call('HSET', key, 'ua', ms_str(now))
end
-- Whether this run's outcome was applied already: a settle sent again because its first
-- reply was lost (a timeout, a reset) carries the same token and record. A success kept
-- short is the hash's `la` with the token's worker, number and start; any other record
-- is in the history list (all of it that is kept: the job may have run several times
-- more while the first reply's sender could not reach Redis). (A record the reclaim wrote for a lost lease
-- is the reclaim's, never the worker's: a truly late result still differs.)
local function settled_before(id, key, token, attempt, short)
  local worker, number, started = string.match(token, TOKEN)
  if not worker then return false end
  if short then
    local f = redis.call('HMGET', key, 'la', 'w', 'at', 'sa')
    if f[1] == string.sub(attempt, 2) and f[2] == worker and f[3] == number and f[4] == started then
      return true
    end
    attempt = success_json(attempt, worker, number, started)
  end
  for _, a in ipairs(redis.call('LRANGE', P .. 'attempts:' .. id, -ATTEMPTS_KEPT, -1)) do
    if a == attempt then return true end
  end
  return false
end
-- Whether `attempt` is in the kept history already, as the late record a settle sent
-- before made of it.
local function recorded_late(id, attempt)
  local late = '{"late":true,' .. string.sub(attempt, 2)
  for _, a in ipairs(redis.call('LRANGE', P .. 'attempts:' .. id, -ATTEMPTS_KEPT, -1)) do
    if a == late then return true end
  end
  return false
end
-- The dead-letter error of a snooze past the cap: the cap, and the last snooze's own
-- class and reason (found by the chaos audit of 2026-12-07, third: the reason was left
-- to the history alone, so the dead letter's groups and the job said only "snoozed").
local function snoozed_out(data)
  local class, message = 'rate_limited', 'snoozed ' .. max_snoozes .. ' times in a row without advancing'
  local ok, e = pcall(cjson.decode, data or '')
  if ok and type(e) == 'table' then
    if type(e.class) == 'string' and e.class ~= '' then class = e.class end
    if type(e.message) == 'string' and e.message ~= '' then message = message .. '; the last: ' .. e.message end
  end
  return cjson.encode({class = class, message = message})
end
-- First every run's record, once (the lease check and what the outcome needs), and the
-- keys its end touches: its account's keys and, for a death, its dead-letter group's.
-- The caller declares the records, histories and the accounts it knows; a call that
-- meets another answers {'need', keys} before writing anything (common.lua: need).
local reads = {}
for i = 0, n - 1 do
  local b = 4 + i * 6
  local key = P .. 'job:' .. ARGV[b]
  if need(key) then
    local f = redis.call('HMGET', key, 'ls', 'cx', 'acct', 'sn', 'cb', 'ac', 'er', 'hb')
    reads[i + 1] = f
    if f[1] == ARGV[b + 1] then
      local acct, outcome = f[3] or '', ARGV[b + 2]
      if acct ~= '' then
        need(P .. 'hold:' .. acct)
        need(P .. 'as:' .. acct)
        need(P .. 'rq:' .. acct)
        if EXCLUSIVE then
          need(P .. 'excl:' .. acct)
          need(P .. 'exclm:' .. acct)
        end
      end
      if outcome == 'dead' then
        need_group_keys((signature_of(ARGV[b + 5])), acct)
      elseif (outcome == 'snooze' and (tonumber(f[4]) or 0) + 1 > max_snoozes)
        or (outcome == 'snooze_advanced' and 1 > max_snoozes) then
        need_group_keys((signature_of(snoozed_out(ARGV[b + 5]))), acct)
      end
    end
  end
end
if needs then return needs_answer() end
local read_once = {}
for i = 0, n - 1 do
  local b = 4 + i * 6
  local id, token, outcome = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local advanced = outcome == 'snooze_advanced'
  local uncounted = outcome == 'snooze_held'
  if advanced or uncounted then outcome = 'snooze' end
  local asked = outcome
  local delay, attempt, data = tonumber(ARGV[b + 3]), ARGV[b + 4], ARGV[b + 5]
  local key = P .. 'job:' .. id
  -- read above, or again when the id came twice (its first outcome changed it)
  local f = reads[i + 1]
  if read_once[id] then
    f = redis.call('HMGET', key, 'ls', 'cx', 'acct', 'sn', 'cb', 'ac', 'er', 'hb')
  end
  read_once[id] = true
  local held = f[1]
  local short = string.byte(attempt, 1) == 61 -- '='
  -- A record with no lease token (replayed after a reclaim, or leased on a primary
  -- lost to a failover before its first run) still takes a late run's record; a record
  -- that is gone (purged, an emptied Redis) takes nothing, and its run is told so.
  local exists = held or (held ~= token and redis.call('EXISTS', key) == 1)
  if held ~= token and not exists then
    out[i + 1] = 'gone'
  elseif held ~= token then
    out[i + 1] = 'lost'
    if attempt ~= '' then
      if settled_before(id, key, token, attempt, short) then
        -- sent again: it says how the first one ended the job when that was otherwise
        -- than asked (a pending cancel, the snooze cap; both end it, so `st` still says)
        out[i + 1] = 'ok'
        local st = redis.call('HGET', key, 'st')
        -- A write, though it changes nothing: the durability wait that follows counts
        -- its connection's writes, and one re-dialled since (a failover to a replica
        -- that had the first settle) would otherwise wait for nothing. Replicas apply
        -- writes in order, so one that has this has the record before it.
        if st then redis.call('HSET', key, 'st', st) end
        if st == 'cancelled' and asked ~= 'cancelled' and asked ~= 'succeeded' and asked ~= 'partial' then
          out[i + 1] = 'as:cancelled'
        elseif st == 'dead' and asked == 'snooze' then
          out[i + 1] = 'as:dead'
        end
      else
        if short then attempt = success_json(attempt, string.match(token, TOKEN)) end
        -- a late settle sent again finds its late record in the kept history
        if not recorded_late(id, attempt) then
          push_late(id, key, attempt)
          count_event('late')
        end
      end
    end
  else
    released[#released + 1] = id
    local kept -- the success kept in the hash
    if short and outcome == 'succeeded' then
      kept = string.sub(attempt, 2)
    elseif short then
      push_attempt(id, success_json(attempt, string.match(token, TOKEN)))
    elseif attempt ~= '' then
      push_attempt(id, attempt)
    end
    -- the run's attempt is given back (once, whichever of the two reasons below holds)
    local gave_back = false
    -- A run that never started sends no record. One still in `unstarted` that sends a
    -- record did start: its start is reported on the keeper's next beat (found by the
    -- chaos audit of 2026-12-07, third: a run that failed, or honoured a cancel, within
    -- that beat was said to have ended before it started, and gave its attempt back).
    local never_ran = attempt == '' and redis.call('ZSCORE', P .. 'unstarted', id)
    -- A run that sends its record started: the job has its free hand-backs again (see
    -- start.lua; a run that ends within a beat is never reported started).
    if attempt ~= '' and f[8] then redis.call('HDEL', key, 'hb') end
    if f[2] == '1' and (outcome == 'retry' or outcome == 'snooze' or outcome == 'gave_way' or outcome == 'release' or outcome == 'dead') then
      -- a hand-back or a snooze gives its attempt back, also when a cancel ends the job;
      -- a failure, last or for good, keeps it (the cancel wins there too, as in a reclaim)
      if outcome ~= 'retry' and outcome ~= 'dead' then
        redis.call('HINCRBY', key, 'at', -1)
        gave_back = true
      end
      -- a run handed back from a prefetch never started
      outcome, data = 'cancelled', never_ran and CANCELLED_UNSTARTED or CANCELLED
    end
    if outcome == 'cancelled' and not gave_back and never_ran then
      -- cancelled while it waited in a prefetch: it never ran, so its attempt goes back
      -- (as a lease handed back unstarted)
      redis.call('HINCRBY', key, 'at', -1)
    end
    local snoozes = tonumber(f[4]) or 0
    if outcome == 'snooze' and not uncounted then
      if advanced then snoozes = 0 end
      snoozes = snoozes + 1
      if snoozes > max_snoozes then
        outcome = 'dead'
        data = snoozed_out(data)
      end
    end
    if f[3] and f[3] ~= '' then push_one(ended, f[3], id) end
    if outcome == 'succeeded' or outcome == 'partial' or outcome == 'dead' or outcome == 'cancelled' then
      local field = 'er'
      if outcome == 'succeeded' or outcome == 'partial' then
        field = 'rs'
        -- (a partial ending is not counted a success)
        if outcome == 'succeeded' then done = done + 1 end
        -- a job that ends well has no last error (an earlier run's stays in its history)
        if f[7] and f[7] ~= '' then redis.call('HSET', key, 'er', '') end
      end
      finish_fields(id, outcome, now, field, data, f[5], {'running', f[3], f[6]}, kept)
      push_pair(by_state, outcome, ms_str(now), id)
    elseif outcome == 'release' then
      if f[3] and f[3] ~= '' then handed[f[3]] = true end
      redis.call('HINCRBY', key, 'at', -1)
      redis.call('HSET', key, 'ls', '', 'w', '')
      queue_ready(id, now, true)
      wake()
    else
      -- retry uses the attempt; snooze gives it back and is counted; gave_way gives
      -- it back uncounted
      local st = 'retrying'
      if outcome == 'snooze' or outcome == 'gave_way' then
        redis.call('HINCRBY', key, 'at', -1)
        if outcome == 'snooze' and not uncounted then redis.call('HSET', key, 'sn', snoozes) end
        st = 'scheduled'
      end
      local due = now + delay
      redis.call('HSET', key, 'st', st, 'ua', now, 'ra', due, 'er', data, 'ls', '', 'w', '')
      -- a turn given away comes back at the front of its account's lane (fetch.lua)
      if outcome == 'gave_way' then redis.call('HSET', key, 'gw', '1') end
      recount(key, f[3], f[6], 'running', st)
      redis.call('ZADD', P .. 'scheduled', due, id)
      if st == 'retrying' then
        redis.call('ZADD', P .. 'retrying', due, id)
      else
        local reason = park_reason(data)
        if reason then
          redis.call('ZADD', P .. 'parked:' .. reason, due, id)
          count_event('parked:' .. reason)
        end
      end
      wake()
    end
    -- A lease that never started leaves no start: a job with no run in its life shows
    -- none (found by the API audit of 2026-12-07, third: it showed the lease's time
    -- after it ended "cancelled before it started" or went back to the queue).
    if never_ran and redis.call('HGET', key, 'at') == '0' then redis.call('HDEL', key, 'sa') end
    -- ended otherwise than asked (a pending cancel, the snooze cap): the worker counts
    -- what the queue did
    out[i + 1] = outcome == asked and 'ok' or ('as:' .. outcome)
  end
end
runs_ended(ended, handed)
flush_tallies()
if #released > 0 then
  redis.call('ZREM', P .. 'active', unpack(released))
  redis.call('ZREM', P .. 'unstarted', unpack(released))
end
for state, list in pairs(by_state) do
  redis.call('ZADD', P .. 'state:' .. state, unpack(list))
end
if done > 0 then
  redis.call('HINCRBY', P .. 'stats', 'succeeded', done)
end
return out
