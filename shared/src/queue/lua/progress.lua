-- ARGV: prefix, id, token, progress_json -> 1 when the lease holder updated it, else 0
local key = P .. 'job:' .. ARGV[2]
if redis.call('HGET', key, 'ls') ~= ARGV[3] then return 0 end
redis.call('HSET', key, 'pg', ARGV[4], 'ua', now_ms())
return 1
