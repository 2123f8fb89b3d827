-- Adopt the rate the marketplace announced (gcra.rs: rescale).
-- KEYS[1] limiter hash; ARGV: announced rate, configured rate, burst, margin, reserve, idle ttl (ms)
-- Returns 1 when the rate in use changed.
local key = KEYS[1]
local new = tonumber(ARGV[1])
local conf = tonumber(ARGV[2])
local cur = tonumber(redis.call('HGET', key, 'rate') or ARGV[2])
if math.abs(new - cur) <= cur * 1e-9 then
  return 0
end
local now = now_us()
local tat = tonumber(redis.call('HGET', key, 'tat') or '')
if tat then
  local burst, margin, reserve = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  local old_interval = params(cur, burst, margin, reserve)
  local new_interval = params(new, burst, margin, reserve)
  local deficit = math.max(tat - now, 0) / old_interval
  tat = now + deficit * new_interval
  redis.call('HSET', key, 'tat', fmt(tat))
end
if math.abs(new - conf) <= conf * 1e-9 then
  redis.call('HDEL', key, 'rate')
else
  redis.call('HSET', key, 'rate', ARGV[1])
end
local ttl = tonumber(ARGV[6])
if tat then ttl = ttl + math.ceil(math.max(tat - now, 0) / 1000) end
if redis.call('EXISTS', key) == 1 then
  redis.call('PEXPIRE', key, fmt(ttl))
end
return 1
