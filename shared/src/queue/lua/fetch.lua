-- Promotes due jobs, reclaims expired leases (both in bounded chunks), then leases up
-- to `max` ready jobs to `worker`.
-- ARGV: prefix, max, worker, lease_ms, chunk
-- -> {jobs, wait_ms}; jobs = {id, token, {v, p, at, ma, to, tp, sa}, ...}; wait_ms = ms
--    until the next job falls due or lease expires (-1: nothing pending)
local max, worker, lease_ms, chunk = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()

local due = redis.call('ZRANGEBYSCORE', P .. 'scheduled', '-inf', now, 'LIMIT', 0, chunk)
if #due > 0 then
  redis.call('ZREM', P .. 'scheduled', unpack(due))
  redis.call('ZREM', P .. 'retrying', unpack(due))
  local ready = {}
  for _, id in ipairs(due) do
    local key = P .. 'job:' .. id
    local pr = redis.call('HGET', key, 'pr')
    if pr then
      redis.call('HSET', key, 'st', 'queued', 'ua', now, 'ra', '')
      ready[#ready + 1] = ready_score(pr, now)
      ready[#ready + 1] = id
    end
  end
  if #ready > 0 then redis.call('ZADD', P .. 'ready', unpack(ready)) end
end

local expired = redis.call('ZRANGEBYSCORE', P .. 'active', '-inf', now, 'LIMIT', 0, chunk)
for _, id in ipairs(expired) do
  redis.call('ZREM', P .. 'active', id)
  local key = P .. 'job:' .. id
  local f = redis.call('HMGET', key, 'at', 'ma', 'cx', 'w', 'sa')
  if f[1] then
    local err = '{"class":"lost","message":"the worker stopped renewing its lease (crashed or cut off)"}'
    redis.call('RPUSH', P .. 'attempts:' .. id, '{"number":' .. f[1] .. ',"worker":"' .. (f[4] or '') ..
      '","started_ms":' .. (f[5] or now) .. ',"ended_ms":' .. now .. ',"outcome":"lost","error":' .. err .. '}')
    redis.call('HSET', key, 'w', '')
    if f[3] == '1' then
      finish(id, 'cancelled', now, 'er', '{"class":"cancelled","message":"cancelled while its worker was lost"}')
    elseif tonumber(f[1]) >= tonumber(f[2]) then
      finish(id, 'dead', now, 'er', err)
    else
      redis.call('HSET', key, 'er', err, 'ls', '')
      queue_ready(id, now, true)
    end
  end
end

local jobs = {}
if max > 0 and redis.call('EXISTS', P .. 'paused') == 0 then
  local popped = redis.call('ZPOPMIN', P .. 'ready', max)
  local leases = {}
  for i = 1, #popped, 2 do
    local id = popped[i]
    local key = P .. 'job:' .. id
    local f = redis.call('HMGET', key, 'v', 'p', 'at', 'ma', 'to', 'tp')
    if f[2] then
      local at = tonumber(f[3]) + 1
      local token = worker .. ':' .. at .. ':' .. now
      redis.call('HSET', key, 'st', 'running', 'at', at, 'ls', token, 'w', worker, 'sa', now, 'ua', now)
      leases[#leases + 1] = now + lease_ms
      leases[#leases + 1] = id
      f[3] = at
      f[7] = now
      jobs[#jobs + 1] = id
      jobs[#jobs + 1] = token
      jobs[#jobs + 1] = f
    end
  end
  if #leases > 0 then redis.call('ZADD', P .. 'active', unpack(leases)) end
  if #popped > 0 and redis.call('ZCARD', P .. 'ready') > 0 then
    wake() -- more work: let the next idle worker in
  end
end

-- How long the caller may sleep: only asked for when it got nothing.
local wait = -1
if #jobs == 0 then
  local nxt = redis.call('ZRANGE', P .. 'scheduled', 0, 0, 'WITHSCORES')
  if nxt[2] then wait = math.max(0, tonumber(nxt[2]) - now) end
  local lease = redis.call('ZRANGE', P .. 'active', 0, 0, 'WITHSCORES')
  if lease[2] then
    local w = math.max(0, tonumber(lease[2]) - now)
    if wait < 0 or w < wait then wait = w end
  end
end
return {jobs, wait}
