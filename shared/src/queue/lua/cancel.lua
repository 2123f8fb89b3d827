-- ARGV: prefix, id -> 'missing' | 'cancelled' | 'requested' | 'terminal:<state>'
local id = ARGV[2]
local key = P .. 'job:' .. id
local st = redis.call('HGET', key, 'st')
if not st then return 'missing' end
local now = now_ms()
if st == 'queued' or st == 'scheduled' or st == 'retrying' then
  remove_ready(id, redis.call('HGET', key, 'acct'))
  redis.call('ZREM', P .. 'scheduled', id)
  redis.call('ZREM', P .. 'retrying', id)
  if st == 'scheduled' then
    for _, r in ipairs(PARK_REASONS) do redis.call('ZREM', P .. 'parked:' .. r, id) end
  end
  finish(id, 'cancelled', now, 'er', '{"class":"cancelled","message":"cancelled before it ran"}', redis.call('HGET', key, 'cb'))
  return 'cancelled'
elseif st == 'running' then
  redis.call('HSET', key, 'cx', '1', 'ua', now)
  return 'requested'
end
return 'terminal:' .. st
