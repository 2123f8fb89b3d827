-- Create a schedule unless its field exists, its account is at its quota or the API key
-- creating it is at its own, atomically, so concurrent creations cannot pass either
-- quota together.
-- KEYS[1]: the schedules hash, KEYS[2]: its version (counted up on a creation), KEYS[3]:
-- the account's index (the set of its fields), KEYS[4]: which key created each field
-- (a hash, field -> key name), KEYS[5] (only when a key creates it): that key's index
-- (the set of the fields it created). ARGV: field, JSON, the most schedules the account
-- may have, the key's name and the most schedules it may hold (both only with KEYS[5]).
-- Returns 1: created; 0: the field exists (not touched); -1: the account is at its
-- quota; -2: the key is at its quota.
-- Only the account's own fields are counted (its index, not every account's names), and
-- only the key's own (its index); an entry whose schedule is gone (deleted by a release
-- that did not keep the index), or was since created again by another key, is dropped,
-- so it holds no place.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
-- Whether `index` holds `max` fields that still count (`counts(f)`); one that does not
-- is dropped from it.
local function full(index, max, counts)
  local n = 0
  for _, f in ipairs(redis.call('SMEMBERS', index)) do
    if counts(f) then
      n = n + 1
      if n >= max then
        return true
      end
    else
      redis.call('SREM', index, f)
    end
  end
  return false
end
local function exists(f)
  return redis.call('HEXISTS', KEYS[1], f) == 1
end
if full(KEYS[3], tonumber(ARGV[3]), exists) then
  return -1
end
if KEYS[5] then
  local function mine(f)
    return exists(f) and redis.call('HGET', KEYS[4], f) == ARGV[4]
  end
  if full(KEYS[5], tonumber(ARGV[5]), mine) then
    return -2
  end
  redis.call('SADD', KEYS[5], ARGV[1])
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
else
  -- Created through no key (a store without one: tools, tests): whoever created this field
  -- before it was deleted no longer holds it.
  redis.call('HDEL', KEYS[4], ARGV[1])
end
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return 1
