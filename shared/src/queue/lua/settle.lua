-- Applies the outcome of finished runs, each only while the worker still holds the
-- lease; a late outcome is kept on the attempt history and changes nothing else.
-- ARGV: prefix, n, max_snoozes, then n times: id, token, outcome, delay_ms, attempt_json, data
-- outcome: succeeded | partial | retry | snooze | dead | cancelled | release
-- A cancel requested during the run wins over retry, snooze and release: the job ends
-- cancelled instead of running again. A snooze past `max_snoozes` ends the job dead.
-- -> list of 'ok' | 'lost'
local n, max_snoozes = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local out = {}
local done = 0
local released = {}
local by_state = {}
-- the runs that ended, per account: their holds and counters are written once at the end
local ended = {}
defer_tallies()
local CANCELLED = '{"class":"cancelled","message":"cancelled while it ran"}'
for i = 0, n - 1 do
  local b = 4 + i * 6
  local id, token, outcome = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local delay, attempt, data = tonumber(ARGV[b + 3]), ARGV[b + 4], ARGV[b + 5]
  local key = P .. 'job:' .. id
  -- one read for the lease check and what the outcome needs
  local f = redis.call('HMGET', key, 'ls', 'cx', 'acct', 'sn', 'cb', 'ac')
  local held = f[1]
  if held ~= token then
    if attempt ~= '' and held then
      push_attempt(id, '{"late":true,' .. string.sub(attempt, 2))
      count_event('late')
    end
    out[i + 1] = 'lost'
  else
    released[#released + 1] = id
    if attempt ~= '' then
      push_attempt(id, attempt)
    end
    if f[2] == '1' and (outcome == 'retry' or outcome == 'snooze' or outcome == 'release') then
      outcome, data = 'cancelled', CANCELLED
    end
    local snoozes = tonumber(f[4]) or 0
    if outcome == 'snooze' then
      snoozes = snoozes + 1
      if snoozes > max_snoozes then
        outcome = 'dead'
        data = cjson.encode({class = 'rate_limited', message = 'snoozed ' .. max_snoozes .. ' times without finishing'})
      end
    end
    if f[3] and f[3] ~= '' then push_one(ended, f[3], id) end
    if outcome == 'succeeded' or outcome == 'partial' or outcome == 'dead' or outcome == 'cancelled' then
      local field = 'er'
      if outcome == 'succeeded' or outcome == 'partial' then
        field = 'rs'
        done = done + 1
      end
      finish_fields(id, outcome, now, field, data, f[5], {'running', f[3], f[6]})
      push_pair(by_state, outcome, ms_str(now), id)
    elseif outcome == 'release' then
      redis.call('HINCRBY', key, 'at', -1)
      redis.call('HSET', key, 'ls', '', 'w', '')
      queue_ready(id, now, true)
      wake()
    else
      -- retry uses the attempt; snooze gives it back and is counted
      local st = 'retrying'
      if outcome == 'snooze' then
        redis.call('HINCRBY', key, 'at', -1)
        redis.call('HSET', key, 'sn', snoozes)
        st = 'scheduled'
      end
      local due = now + delay
      redis.call('HSET', key, 'st', st, 'ua', now, 'ra', due, 'er', data, 'ls', '', 'w', '')
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
    out[i + 1] = 'ok'
  end
end
runs_ended(ended)
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
