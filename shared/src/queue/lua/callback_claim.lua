-- Claims up to `max` due callback deliveries of the kind for `lease_ms`: each claimed
-- delivery's next due time becomes the claim's end, so no other worker tries it while
-- this one does, and a worker that dies mid-try leaves it due again when the claim ends
-- (that try is recorded `lost`). A delivery past `max_tries` ends given up.
-- A worker's slots are shared between accounts: with `per_account` > 0 an account whose
-- tries in flight at this worker (the pairs at the end of ARGV) reach it gets none
-- more, and its due deliveries are passed over (up to SCAN of them) for the next
-- account's, so one tenant's slow receivers cannot hold every slot.
-- KEYS: the deliveries' index `cbdue`, then the records and try histories of the
-- entries the caller read ahead (the index's first, by due time): one that came due
-- since is passed over until the next call.
-- ARGV: prefix, max, lease_ms, worker, max_tries, per_account, then pairs account,
--       tries in flight
-- -> {{id, token, try, ending, url, sealed secret, ended json, account}, ...}, wait_ms
--    (ms until the next delivery falls due when none was claimed; -1: none pending, or
--    only accounts at their share are due)
local max, lease_ms, worker, max_tries = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local per_account = tonumber(ARGV[6]) or 0
local busy = {}
for i = 7, #ARGV - 1, 2 do busy[ARGV[i]] = tonumber(ARGV[i + 1]) end
local SCAN = 1000
local now = now_ms()
local due = redis.call('ZRANGE', P .. 'cbdue', '-inf', now, 'BYSCORE', 'LIMIT', 0, per_account > 0 and SCAN or max)
local out = {}
local passed = false
for _, id in ipairs(due) do
  if #out >= max then break end
  local key = P .. 'job:' .. id
  local f = declared(key) and redis.call('HMGET', key, 'cb', 'cbs', 'cbe', 'cbn', 'cbt', 'cbl', 'acct')
  local acct = f and f[7] or ''
  if not f then
    passed = true
  elseif not f[1] or f[1] == '' or not f[3] then
    redis.call('ZREM', P .. 'cbdue', id)
  elseif per_account > 0 and (busy[acct] or 0) >= per_account then
    passed = true
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
      callback_next(id, now)
    else
      local token = worker .. ':' .. (f[4] or '1') .. ':' .. (tries + 1) .. ':' .. now
      redis.call('HSET', key, 'cbt', tries + 1, 'cbl', token)
      redis.call('ZADD', P .. 'cbdue', now + lease_ms, id)
      busy[acct] = (busy[acct] or 0) + 1
      out[#out + 1] = {id, token, tostring(tries + 1), delivery, f[1], f[2] or '', f[3], acct}
    end
  end
end
local wait = -1
if #out == 0 and not passed then
  local nxt = redis.call('ZRANGE', P .. 'cbdue', 0, 0, 'WITHSCORES')
  if nxt[2] then wait = math.max(0, tonumber(nxt[2]) - now) end
end
return {out, wait}
