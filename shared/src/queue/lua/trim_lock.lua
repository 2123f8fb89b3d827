-- The kind's trim lock (KEYS[1]) while it holds this pass's token: extended, or deleted.
-- A pass that outlasted its lock must neither free nor take over the next trimmer's.
-- ARGV: prefix, token, ttl ms (0: delete)
-- -> 1 when the lock held the token (and was extended or deleted), else 0
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
if ARGV[3] == '0' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[3])
