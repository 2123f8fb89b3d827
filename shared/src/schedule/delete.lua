-- Delete a schedule and its entry in its account's index, in one step.
-- KEYS[1]: the schedules hash, KEYS[2]: its version, KEYS[3]: the account's index.
-- ARGV[1]: the field. Returns 1 when the schedule existed.
local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('INCR', KEYS[2])
return n
