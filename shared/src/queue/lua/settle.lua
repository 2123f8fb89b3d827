-- Applies the outcome of finished runs, each only while the worker still holds the
-- lease; a late outcome is kept on the attempt history and changes nothing else.
-- ARGV: prefix, n, then n times: id, token, outcome, delay_ms, attempt_json, data
-- outcome: succeeded | partial | retry | snooze | dead | cancelled | release
-- -> list of 'ok' | 'lost'
local n = tonumber(ARGV[2])
local now = now_ms()
local out = {}
local done = 0
for i = 0, n - 1 do
  local b = 3 + i * 6
  local id, token, outcome = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local delay, attempt, data = tonumber(ARGV[b + 3]), ARGV[b + 4], ARGV[b + 5]
  local key = P .. 'job:' .. id
  if redis.call('HGET', key, 'ls') ~= token then
    if attempt ~= '' and redis.call('EXISTS', key) == 1 then
      redis.call('RPUSH', P .. 'attempts:' .. id, '{"late":true,' .. string.sub(attempt, 2))
    end
    out[#out + 1] = 'lost'
  else
    redis.call('ZREM', P .. 'active', id)
    if attempt ~= '' then
      redis.call('RPUSH', P .. 'attempts:' .. id, attempt)
    end
    if outcome == 'succeeded' or outcome == 'partial' then
      finish(id, outcome, now, 'rs', data)
      done = done + 1
    elseif outcome == 'dead' or outcome == 'cancelled' then
      finish(id, outcome, now, 'er', data)
    elseif outcome == 'release' then
      redis.call('HINCRBY', key, 'at', -1)
      redis.call('HDEL', key, 'ls', 'w')
      queue_ready(id, now)
      wake()
    else
      -- retry uses the attempt; snooze gives it back
      local st = 'retrying'
      if outcome == 'snooze' then
        redis.call('HINCRBY', key, 'at', -1)
        st = 'scheduled'
      end
      local due = now + delay
      redis.call('HSET', key, 'st', st, 'ua', now, 'ra', due, 'er', data)
      redis.call('HDEL', key, 'ls', 'w')
      redis.call('ZADD', P .. 'scheduled', due, id)
      if st == 'retrying' then
        redis.call('ZADD', P .. 'retrying', due, id)
      end
      wake()
    end
    out[#out + 1] = 'ok'
  end
end
if done > 0 then
  redis.call('HINCRBY', P .. 'stats', 'succeeded', done)
end
return out
