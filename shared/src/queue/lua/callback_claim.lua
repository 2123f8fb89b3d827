-- Claims up to `max` due callback deliveries of the kind for `lease_ms`: each claimed
-- delivery's next due time becomes the claim's end, so no other worker tries it while
-- this one does, and a worker that dies mid-try leaves it due again when the claim ends
-- (that try is recorded `lost`). A delivery past `max_tries` ends given up.
-- A worker's slots are shared between accounts: with `per_account` > 0 an account whose
-- tries in flight at this worker (the pairs at the end of ARGV) reach it gets none
-- more. Its due deliveries met in `cbdue` are held back, each once: moved, with their
-- due times, to `cbheld:<account>`, and the account into `cbheld` by its oldest. So
-- `cbdue`'s head is other accounts' deliveries however many one account keeps due, and
-- a claim gives each held account with room at this worker (oldest first) up to its
-- room of them back before it reads `cbdue`.
-- KEYS: `cbdue`, `cbheld`, then the records and try histories of the deliveries the
-- caller read ahead (`cbdue`'s first by due time, and the first held ones of each held
-- account with room), and `cbheld:<account>` of those accounts and of each account at
-- its share: what was not declared is passed over until the next call.
-- ARGV: prefix, max, lease_ms, worker, max_tries, per_account, then pairs account,
--       tries in flight
-- -> {{id, token, try, ending, url, sealed secret, ended json, account}, ...}, wait_ms
--    (ms until the next delivery falls due when none was claimed; -1: none pending, or
--    only accounts at their share are due)
local max, lease_ms, worker, max_tries = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local per_account = tonumber(ARGV[6]) or 0
local busy = {}
for i = 7, #ARGV - 1, 2 do busy[ARGV[i]] = tonumber(ARGV[i + 1]) end
-- How many due deliveries and held accounts a claim looks at (callback_store.rs).
local SCAN, HELD_SCAN = 1000, 100
local now = now_ms()
local out = {}
local passed = false
local function read(id)
  local key = P .. 'job:' .. id
  return key, declared(key) and redis.call('HMGET', key, 'cb', 'cbs', 'cbe', 'cbn', 'cbt', 'cbl', 'acct', 'cbx')
end
-- Claims delivery `id` (its record's fields `f`), or ends it: gone, or out of tries.
local function take(id, key, f)
  if not f[1] or f[1] == '' or not f[3] then
    redis.call('ZREM', P .. 'cbdue', id)
    return
  end
  local acct = f[7] or ''
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
local function room_of(acct)
  if per_account > 0 then return math.min(max - #out, per_account - (busy[acct] or 0)) end
  return max - #out
end
-- Held deliveries first: they have waited longest.
for _, acct in ipairs(redis.call('ZRANGE', P .. 'cbheld', 0, HELD_SCAN - 1)) do
  if #out >= max then break end
  local hkey = P .. 'cbheld:' .. acct
  local room = room_of(acct)
  if room <= 0 or not declared(hkey) then
    passed = true
  else
    for _, id in ipairs(redis.call('ZRANGE', hkey, 0, room - 1)) do
      local key, f = read(id)
      if not f then
        passed = true
      else
        redis.call('ZREM', hkey, id)
        -- A try recorded after its claim ran out ended the delivery meanwhile, or put
        -- it back in `cbdue` (in flight or due again, it is there): dropped here.
        if f[8] == 'pending' and not redis.call('ZSCORE', P .. 'cbdue', id) then take(id, key, f) end
      end
    end
    local first = redis.call('ZRANGE', hkey, 0, 0, 'WITHSCORES')
    if first[2] then
      redis.call('ZADD', P .. 'cbheld', first[2], acct)
    else
      redis.call('ZREM', P .. 'cbheld', acct)
    end
  end
end
local due = redis.call('ZRANGE', P .. 'cbdue', '-inf', now, 'BYSCORE', 'LIMIT', 0, per_account > 0 and SCAN or max, 'WITHSCORES')
for i = 1, #due, 2 do
  if #out >= max then break end
  local id = due[i]
  local key, f = read(id)
  local acct = f and f[7] or ''
  if not f then
    passed = true
  elseif per_account > 0 and f[1] and f[1] ~= '' and f[3] and room_of(acct) <= 0 then
    local hkey = P .. 'cbheld:' .. acct
    if declared(hkey) then
      redis.call('ZREM', P .. 'cbdue', id)
      redis.call('ZADD', hkey, due[i + 1], id)
      redis.call('ZADD', P .. 'cbheld', 'LT', due[i + 1], acct)
    end
    passed = true
  else
    take(id, key, f)
  end
end
local wait = -1
if #out == 0 and not passed then
  local nxt = redis.call('ZRANGE', P .. 'cbdue', 0, 0, 'WITHSCORES')
  if nxt[2] then wait = math.max(0, tonumber(nxt[2]) - now) end
end
return {out, wait}
