-- Once per Redis: put every schedule saved before the per-account index (by an older
-- release) into its account's index, then set the marker. Idempotent and atomic: callers
-- that start at once each run it, and all but the first find the marker and return.
-- KEYS[1]: the schedules hash, KEYS[2]: the marker. ARGV[1]: the index keys' prefix (the
-- account follows it). The index keys share the hash's slot (its hash tag) but are not
-- declared: which accounts have schedules is known only from the hash.
-- Returns how many fields it indexed.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local n = 0
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  local slash = string.find(f, '/', 1, true)
  local account = ''
  if slash then
    account = string.sub(f, 1, slash - 1)
  else
    -- Saved before names were per account: the account is in the schedule's payload.
    local ok, s = pcall(cjson.decode, redis.call('HGET', KEYS[1], f))
    if ok and type(s) == 'table' and type(s.payload) == 'table' and type(s.payload.account_id) == 'string' then
      account = s.payload.account_id
    end
  end
  n = n + redis.call('SADD', ARGV[1] .. account, f)
end
redis.call('SET', KEYS[2], '1')
return n
