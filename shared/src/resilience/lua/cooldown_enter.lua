-- Enter (or join) the account's quota cooldown (cooldown.rs: next_cooldown).
-- KEYS[1] cooldown hash {until, reason, level, since} (ms since the epoch)
-- ARGV: reason, hint (ms), decay_after (ms), step 1 (ms), step 2, ...
-- Returns {escalated 1/0, until, reason, level, since}.
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hint = tonumber(ARGV[2])
local decay = tonumber(ARGV[3])
local nsteps = #ARGV - 3
local h = redis.call('HMGET', key, 'until', 'reason', 'level', 'since')
local until_ms = tonumber(h[1] or '')
if until_ms and until_ms > now then
  -- Already cooling down: this 429 belongs to the same quota window. No new level;
  -- a longer server hint may only stretch the current one.
  if now + hint > until_ms then
    until_ms = now + hint
    redis.call('HSET', key, 'until', until_ms)
    redis.call('PEXPIRE', key, until_ms - now + decay)
  end
  return {0, until_ms, h[2], tonumber(h[3]), tonumber(h[4])}
end
local level = 1
if until_ms and now - until_ms < decay then
  level = math.min(tonumber(h[3]) + 1, nsteps)
end
local dur = math.max(tonumber(ARGV[3 + level]), hint)
until_ms = now + dur
redis.call('HSET', key, 'until', until_ms, 'reason', ARGV[1], 'level', level, 'since', now)
redis.call('PEXPIRE', key, dur + decay)
return {1, until_ms, ARGV[1], level, now}
