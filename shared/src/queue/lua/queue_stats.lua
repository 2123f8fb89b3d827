-- What /metrics shows beyond the plain counts: jobs parked per guard, jobs held back by
-- their account's cap, the event counters of `P stats`, and the lag's head. Every read
-- is O(1) or O(log n), except `account_busy`, which adds up the lanes of the accounts at
-- their cap: at most LANES_READ of them (each holds at least one run in flight, so there
-- are no more than the runs in flight); past that it extrapolates from a sample.
-- The head is when the longest-waiting ready job became ready, over the lanes of the
-- first LANES_READ lanes in pass order (the next to have a turn) and of the capped
-- accounts read for `account_busy`; past that many accounts it is the oldest of those
-- read. A lane is ordered by priority band first, so its oldest job may be behind a
-- newer, more urgent one: the first job of each of its bands is read (one read when
-- the lane holds one band, the common case). A job put back at the front (a turn given
-- away, a hand-back) is placed by its creation but ready since its `readysince` score.
-- KEYS: the park indexes, `blocked`, `stats`, `passes`, `readysince`, and the lanes of the accounts
-- the caller read ahead: a sample of `blocked` (also in ARGV) and the first LANES_READ
-- of `passes`. A lane that was not declared is not read (an account offered since).
-- ARGV: prefix, then the sampled accounts of `blocked`
-- -> {parked rate_limit, parked quota_cooldown, parked breaker_open,
--     account_busy jobs, reclaimed_lost, reclaimed_released, late,
--     parks: rate_limit, quota_cooldown, breaker_open, head score (0: none)}
local LANES_READ = 1000
local out = {}
for _, r in ipairs(PARK_REASONS) do
  out[#out + 1] = redis.call('ZCARD', P .. 'parked:' .. r)
end
local head
local BAND = 1e13
local function see(lane, entry)
  local score = tonumber(entry[2])
  if not score then return end
  local since = score % BAND
  local qa = tonumber(redis.call('ZSCORE', P .. 'readysince', entry[1]))
  if qa and qa > since then since = qa end
  if not head or since < head then head = since end
end
local function see_head(acct)
  local lane = lane_key(acct)
  if not declared(lane) then return end
  local first = redis.call('ZRANGE', lane, 0, 0, 'WITHSCORES')
  if #first == 0 then return end
  see(lane, first)
  local last = redis.call('ZRANGE', lane, -1, -1, 'WITHSCORES')
  local from, to = math.floor(tonumber(first[2]) / BAND), math.floor(tonumber(last[2]) / BAND)
  for band = from + 1, to do
    see(lane, redis.call('ZRANGE', lane, band * BAND, (band + 1) * BAND - 1, 'BYSCORE', 'LIMIT', 0, 1, 'WITHSCORES'))
  end
end
local blocked = redis.call('HLEN', P .. 'blocked')
local busy = 0
if blocked > 0 then
  local read = 0
  for i = 2, #ARGV do
    local acct = ARGV[i]
    if declared(lane_key(acct)) and redis.call('HEXISTS', P .. 'blocked', acct) == 1 then
      read = read + 1
      busy = busy + redis.call('ZCARD', lane_key(acct))
    end
  end
  if read > 0 and blocked > read then busy = math.floor(busy * blocked / read) end
end
out[#out + 1] = busy
local s = redis.call('HMGET', P .. 'stats', 'reclaimed_lost', 'reclaimed_released', 'late',
  'parked:rate_limit', 'parked:quota_cooldown', 'parked:breaker_open')
for i = 1, #s do out[#out + 1] = tonumber(s[i]) or 0 end
-- The lag counts only jobs that could start: a lane its account's cap holds back (in
-- `blocked`) is the account's own wait, counted as account_busy above, and no worker
-- added would start it (found by the observability audit of 2026-12-07, second: the
-- autoscaler went to its maximum on one account's long runs, and the lag alert paged).
for _, acct in ipairs(redis.call('ZRANGE', P .. 'passes', 0, LANES_READ - 1)) do
  if blocked == 0 or redis.call('HEXISTS', P .. 'blocked', acct) == 0 then see_head(acct) end
end
out[#out + 1] = head or 0
return out
