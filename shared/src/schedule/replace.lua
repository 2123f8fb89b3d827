-- Replace a schedule and keep its account's index, in one step, so no listing sees the
-- schedule missing from the index.
-- KEYS[1]: the schedules hash, KEYS[2]: its version, KEYS[3]: the account's index.
-- ARGV: field, JSON, and the field it was saved in before names were per account, to
-- remove ('' when none).
-- -> 1, or 0 with nothing written when the schedule is gone (deleted since the caller
-- read it): putting it again is a creation, with the account's quota checked.
-- The schedule stays counted against the API key that created it (`create.lua`), whoever
-- replaces it: the creator's index and `creator` are not touched.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and (ARGV[3] == '' or redis.call('HEXISTS', KEYS[1], ARGV[3]) == 0) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
if ARGV[3] ~= '' then
  redis.call('HDEL', KEYS[1], ARGV[3])
  redis.call('SREM', KEYS[3], ARGV[3])
end
redis.call('INCR', KEYS[2])
return 1
