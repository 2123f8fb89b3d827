-- ARGV: prefix, id, payload, account, priority, max_attempts, timeout_ms, run_at_ms,
--       delay_ms, idem_key, idem_fingerprint, idem_ttl_s, exclusive, traceparent
-- -> {'created', id, state} | {'existing', id, state} | {'conflict', id, ''}
local id, payload, acct = ARGV[2], ARGV[3], ARGV[4]
local prio, max_attempts, timeout = ARGV[5], ARGV[6], ARGV[7]
local run_at, delay = tonumber(ARGV[8]), tonumber(ARGV[9])
local idem, fp, idem_ttl = ARGV[10], ARGV[11], tonumber(ARGV[12])
local exclusive, traceparent = ARGV[13], ARGV[14]
local now = now_ms()

local idem_key = P .. 'idem:' .. idem
if idem ~= '' then
  local v = redis.call('GET', idem_key)
  if v then
    local sep = string.find(v, '|', 1, true)
    local existing, efp = string.sub(v, 1, sep - 1), string.sub(v, sep + 1)
    if efp ~= fp then
      return {'conflict', existing, ''}
    end
    local st = redis.call('HGET', P .. 'job:' .. existing, 'st')
    if st then
      return {'existing', existing, st}
    end
    -- The job it named has been trimmed: the key is free again.
  end
end

if exclusive == '1' and acct ~= '' then
  local ekey = P .. 'excl:' .. acct
  local holder = redis.call('GET', ekey)
  if holder then
    local st = redis.call('HGET', P .. 'job:' .. holder, 'st')
    if st and st ~= 'succeeded' and st ~= 'partial' and st ~= 'dead' and st ~= 'cancelled' then
      if idem ~= '' then
        redis.call('SET', idem_key, holder .. '|' .. fp, 'EX', idem_ttl)
      end
      return {'existing', holder, st}
    end
  end
  redis.call('SET', ekey, id)
end

local due = now
if run_at > 0 then
  due = run_at
elseif delay > 0 then
  due = now + delay
end
local state = 'queued'
if due > now then
  state = 'scheduled'
end

local key = P .. 'job:' .. id
redis.call('HSET', key, 'v', '1', 'st', state, 'p', payload, 'pr', prio, 'ma', max_attempts,
  'at', 0, 'to', timeout, 'ca', now, 'ua', now)
if acct ~= '' then
  redis.call('HSET', key, 'acct', acct)
  redis.call('ZADD', P .. 'acct:' .. acct, now, id)
end
if traceparent ~= '' then
  redis.call('HSET', key, 'tp', traceparent)
end
if idem ~= '' then
  redis.call('HSET', key, 'ik', idem)
  redis.call('SET', idem_key, id .. '|' .. fp, 'EX', idem_ttl)
end
redis.call('ZADD', P .. 'all', now, id)
if state == 'scheduled' then
  redis.call('HSET', key, 'ra', due)
  redis.call('ZADD', P .. 'scheduled', due, id)
else
  redis.call('ZADD', P .. 'ready', ready_score(prio, now), id)
end
-- Wake an idle worker: for a scheduled job it learns the new earliest due time.
wake()
return {'created', id, state}
