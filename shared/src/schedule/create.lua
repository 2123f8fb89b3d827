-- Create a schedule unless its field exists or its account is at its quota, atomically,
-- so concurrent creations cannot pass the quota together.
-- KEYS[1]: the schedules hash, KEYS[2]: its version (counted up on a creation). ARGV: field, JSON, the account's field prefix
-- ("<account>/"), the most schedules the account may have.
-- Returns 1: created; 0: the field exists (not touched); -1: the account is at its quota.
-- HKEYS reads every account's names: bounded by accounts x the quota, and creations are
-- rate-limited writes.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
local prefix, max, n = ARGV[3], tonumber(ARGV[4]), 0
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, #prefix) == prefix then
    n = n + 1
    if n >= max then
      return -1
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return 1
