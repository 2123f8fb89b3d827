-- Claims up to `max` due callback deliveries of the kind for `lease_ms`: each claimed
-- delivery's next due time becomes the claim's end, so no other worker tries it while
-- this one does, and a worker that dies mid-try leaves it due again when the claim ends
-- (that try is recorded `lost`). A delivery past `max_tries` ends given up.
-- ARGV: prefix, max, lease_ms, worker, max_tries
-- -> {{id, token, try, ending, url, sealed secret, ended json, account}, ...}, wait_ms
--    (ms until the next delivery falls due when none was claimed; -1: none pending)
local max, lease_ms, worker, max_tries = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local now = now_ms()
local due = redis.call('ZRANGE', P .. 'cbdue', '-inf', now, 'BYSCORE', 'LIMIT', 0, max)
local out = {}
for _, id in ipairs(due) do
  local key = P .. 'job:' .. id
  local f = redis.call('HMGET', key, 'cb', 'cbs', 'cbe', 'cbn', 'cbt', 'cbl', 'acct')
  if not f[1] or f[1] == '' or not f[3] then
    redis.call('ZREM', P .. 'cbdue', id)
  else
    local tries = tonumber(f[5]) or 0
    local delivery = id .. ':' .. (f[4] or '1')
    if f[6] and f[6] ~= '' then
      -- the previous claim ran out unrecorded: its worker stopped mid-try
      local rec = {delivery_id = delivery, ['try'] = tries, at_ms = now, result = 'lost', error = 'lost',
        message = 'the worker trying it stopped before recording the answer', duration_ms = 0}
      if tries >= max_tries then rec.result = 'gave_up' end
      redis.call('RPUSH', P .. 'callbacks:' .. id, cjson.encode(rec))
      redis.call('LTRIM', P .. 'callbacks:' .. id, -20, -1)
    end
    if tries >= max_tries then
      redis.call('ZREM', P .. 'cbdue', id)
      redis.call('HSET', key, 'cbl', '', 'cbx', 'failed', 'cbw', '')
    else
      local token = worker .. ':' .. (f[4] or '1') .. ':' .. (tries + 1) .. ':' .. now
      redis.call('HSET', key, 'cbt', tries + 1, 'cbl', token)
      redis.call('ZADD', P .. 'cbdue', now + lease_ms, id)
      out[#out + 1] = {id, token, tostring(tries + 1), delivery, f[1], f[2] or '', f[3], f[7] or ''}
    end
  end
end
local wait = -1
if #out == 0 then
  local nxt = redis.call('ZRANGE', P .. 'cbdue', 0, 0, 'WITHSCORES')
  if nxt[2] then wait = math.max(0, tonumber(nxt[2]) - now) end
end
return {out, wait}
