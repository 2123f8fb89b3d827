-- Delete a schedule, its entry in its account's index and in the index of the key that
-- created it, in one step.
-- KEYS[1]: the schedules hash, KEYS[2]: its version, KEYS[3]: the account's index,
-- KEYS[4]: which key created each field, KEYS[5] (optional): the index of the key the
-- caller read as its creator. ARGV[1]: the field, ARGV[2]: that key's name (with KEYS[5]).
-- The creator is read by the caller before, so every key touched is declared: if the
-- field was deleted and created again by another key in between, that key's entry stays
-- and its next creation drops it (its schedule is gone).
-- Returns 1 when the schedule existed.
local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
if KEYS[5] and redis.call('HGET', KEYS[4], ARGV[1]) == ARGV[2] then
  redis.call('SREM', KEYS[5], ARGV[1])
end
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('INCR', KEYS[2])
return n
