-- The kind's trim lock (KEYS[1]) while it holds this pass's token: extended, or deleted.
-- A pass that outlasted its lock must neither free nor take over the next trimmer's.
-- Or, with ARGV[4] 'take', the lock taken if free: at Redis's memory limit, where a plain
-- SET is refused and this script (a few bytes) still runs.
-- ARGV: prefix, token, ttl ms (0: delete), 'take'
-- -> 1 when the lock held the token (and was extended or deleted), or was taken; else 0
if ARGV[4] == 'take' then
  return redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3]) and 1 or 0
end
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
if ARGV[3] == '0' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[3])
