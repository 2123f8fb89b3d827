-- Create a schedule unless its field exists or its account is at its quota, atomically,
-- so concurrent creations cannot pass the quota together.
-- KEYS[1]: the schedules hash, KEYS[2]: its version (counted up on a creation), KEYS[3]:
-- the account's index (the set of its fields). ARGV: field, JSON, the most schedules the
-- account may have.
-- Returns 1: created; 0: the field exists (not touched); -1: the account is at its quota.
-- Only the account's own fields are counted (its index, not every account's names); an
-- entry whose schedule is gone (deleted by a release that did not keep the index) is
-- dropped, so it holds no place.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
local max, n = tonumber(ARGV[3]), 0
for _, f in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if redis.call('HEXISTS', KEYS[1], f) == 1 then
    n = n + 1
    if n >= max then
      return -1
    end
  else
    redis.call('SREM', KEYS[3], f)
  end
end
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return 1
