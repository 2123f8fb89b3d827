-- Shared helpers of every queue script, loaded once per server with them as one Redis
-- Functions library (or prepended to each script where a server refuses FUNCTION LOAD;
-- queue/scripts.rs). Every key of a queue starts with the prefix `drover:{<kind>}:` so
-- all of them hash to one Cluster slot; KEYS[1] is always one of them so a Cluster
-- client routes the call to that slot.
-- Per call: the queue's prefix `P` (ARGV[1]), whether its kind de-duplicates per
-- account (`EXCLUSIVE`), and the deferred counter moves (`tallies`, below), all set by
-- `begin_call` before a script's body runs: in a library they outlive the call.
local P, EXCLUSIVE, tallies, CALL_KEYS, key_set, needs, ALL_DECLARED
local function begin_call(prefix, keys)
  P = prefix
  CALL_KEYS, key_set, needs = keys, nil, nil
  -- A call that declares only its queue's slot key (a hot script on one server, where
  -- no slot moves: queue/redis_store/mod.rs, `strict`) reaches the keys it implies.
  ALL_DECLARED = #keys == 1
  -- Only sync jobs are de-duplicated per account (`excl:<account>` names the sync that
  -- is queued or running): the kind's queue `{sync}`, or one of its partitions `{sync:<p>}`.
  EXCLUSIVE = string.find(P, '{sync[}:]') ~= nil
  tallies = nil
end
-- Whether this call declared `key` in KEYS. A script whose keys depend on what it reads
-- (lanes, job records) is called with those its caller read ahead, and passes over (or
-- answers `again` for) any other it meets, so it touches only declared keys (issue 16).
local function declared(key)
  if ALL_DECLARED then return true end
  if not key_set then
    key_set = {}
    for _, k in ipairs(CALL_KEYS or {}) do key_set[k] = true end
  end
  return key_set[key] == true
end
-- Whether `a` comes before `b` in a sorted set's order of equal scores (byte by byte):
-- Lua's own `<` collates by the server's locale, which Redis takes from its environment.
local function lex_before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
-- A listing's place in `index` read newest first: the rank, in a reverse range, of the
-- first entry after its cursor (score `max_score`, '+inf' for none, and id `cursor_id`).
-- The cursor's ties already shown (its score, ids from its own up: the order of a
-- reverse range) are passed over by their count, found by halving the tie range, whether
-- the cursor's own entry is still there or not; a page then reads from that rank, so a
-- page deep in a run of ties costs what the first one does (found by the audit of
-- 2026-12-07, fourth: each page walked every tie shown before it).
local function rank_after_cursor(index, max_score, cursor_id)
  if max_score == '+inf' then return 0 end
  local higher = redis.call('ZCOUNT', index, '(' .. max_score, '+inf')
  if cursor_id == '' then return higher end
  local lo, hi = higher, higher + redis.call('ZCOUNT', index, max_score, max_score)
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if not lex_before(redis.call('ZRANGE', index, mid, mid, 'REV')[1], cursor_id) then lo = mid + 1 else hi = mid end
  end
  return lo
end
-- A script that learns its keys only as it reads (a job's account, a dead-letter
-- signature) notes each undeclared key it would touch with `need` and, before writing
-- anything, answers `{'need', keys}` (`needs_answer`): its caller calls again with them
-- declared.
local function need(key)
  if declared(key) then return true end
  needs = needs or {}
  needs[#needs + 1] = key
  return false
end
local function needs_answer()
  if needs then return {'need', needs} end
  return nil
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- A number given to redis.call is formatted for each argument (an snprintf per number on
-- Redis 7.0, a third of an HSET's cost); the millisecond times a call writes for every
-- job go as strings, each formatted once per call.
local ms_n, ms_s
local function ms_str(ms)
  if ms ~= ms_n then
    ms_n, ms_s = ms, string.format('%.0f', ms)
  end
  return ms_s
end
-- Higher priority first, then oldest first. Priorities are 0..9.
local BAND = 10000000000000
local function ready_score(priority, at)
  return (9 - tonumber(priority or 0)) * BAND + at
end
local function wake()
  if redis.call('LLEN', P .. 'marker') == 0 then
    redis.call('LPUSH', P .. 'marker', '1')
  end
end
local function is_terminal(st)
  return st == 'succeeded' or st == 'partial' or st == 'dead' or st == 'cancelled'
end
-- Parking (docs/architecture.md, "Parking"): a snoozed run names the guard it waits for
-- in its error; the marketplace client's texts say which guard it was. Returns the
-- reason (rate_limit | quota_cooldown | breaker_open) and the message, or nil for an
-- error that is not a park. `parked:<reason>` (ZSET, by due ms) holds the parked jobs
-- until they fall due, so the counts per reason are one ZCARD each.
local PARK_REASONS = {'rate_limit', 'quota_cooldown', 'breaker_open'}
local function park_reason(err)
  local ok, e = pcall(cjson.decode, err or '')
  if not ok or type(e) ~= 'table' or e.class ~= 'rate_limited' or type(e.message) ~= 'string' then
    return nil, nil
  end
  local m = e.message
  if string.find(m, 'circuit open', 1, true) then
    return 'breaker_open', m
  elseif string.find(m, 'quota cooldown', 1, true) or string.find(m, 'report quota', 1, true) then
    return 'quota_cooldown', m
  end
  return 'rate_limit', m
end
-- A run that stopped because a dependency it needs did not answer, or that handed back
-- its turn (error class `interrupted`, a snooze that uses no attempt), resumes by itself
-- when its snooze ends. The message, or nil for any other error.
local function interrupted_message(err)
  if not err or not string.find(err, 'interrupted', 1, true) then return nil end
  local ok, e = pcall(cjson.decode, err)
  if ok and type(e) == 'table' and e.class == 'interrupted' and type(e.message) == 'string' then
    return e.message
  end
  return nil
end
-- The table kept under `key` in `lists`, made on first use: the per-lane, per-account
-- and per-state batches (and deferred counter moves) a script writes once at its end.
local function list_in(lists, key)
  local list = lists[key]
  if not list then
    list = {}
    lists[key] = list
  end
  return list
end
local function push_pair(lists, key, a, b)
  local list = list_in(lists, key)
  local n = #list
  list[n + 1], list[n + 2] = a, b
end
local function push_one(lists, key, a)
  local list = list_in(lists, key)
  list[#list + 1] = a
end
-- Event counters for /metrics (`P stats`), bumped only on rare paths: reclaims, late
-- results, parks.
local function count_event(field)
  redis.call('HINCRBY', P .. 'stats', field, 1)
end

-- Per-account dispatch (docs/architecture.md, "Dispatch"). Each account's queued jobs
-- wait in their own lane `rq:<account>` (jobs without an account share the lane `rq:`);
-- the lanes are the only index of queued jobs, and `queued` counts their entries (every
-- add and take goes through `lane_add` / `lane_taken`). `passes` holds the accounts that
-- have queued jobs and may run one now, scored by the pass of their next turn (stride
-- scheduling): a turn moves a lane's pass on by its stride, STRIDE / (p + 1) for p the
-- priority of its best waiting job, so an account of priority p gets p + 1 turns to a
-- priority-0 account's one and none waits for another's backlog to drain. `vt` is the
-- pass of the latest turn given, plus one for each lane offered since (so lanes offered
-- one after another never share a pass, and take turns in the order they came). A lane
-- offered anew starts a hundredth of its stride after it: an account that had nothing
-- waiting goes ahead of the lanes cycling on with backlogs (its first job starts at about
-- the next free slot, sooner the more urgent) — unless it had a turn lately: a lane that
-- fetch emptied is remembered in `idle` with the pass its next turn would have had, and
-- starts there if that is later (so submitting one job at a time gains nothing); the
-- memory goes once `vt` passes it. A lane back from its account's cap starts a whole
-- stride after `vt` (it had its turn).
-- An account at its concurrency cap leaves `passes` for `blocked` (account -> cap) and
-- comes back when one of its runs (the members of `hold:<account>`) ends.
local STRIDE = 2520000 -- divisible by 100 times every weight, 1..10
-- The stride of a lane whose best job has lane score `score` (ready_score).
local function stride_of(score)
  local band = math.min(9, math.max(0, math.floor(score / BAND)))
  return STRIDE / (10 - band)
end
local function lane_key(acct)
  return P .. 'rq:' .. (acct or '')
end
-- `score`: the lane score of a job just added to the lane (or of its head);
-- `returning`: the lane comes back from its account's cap; `front`: a job of the lane
-- was handed back or reclaimed (its run cut short, not a turn used), so the lane goes
-- ahead of the lanes waiting, whose passes are past `vt`, and a turn it remembered is
-- spent (found by the fairness audit of 2026-12-07, third: a job reclaimed from a
-- crashed worker, or handed back at a shutdown, waited a whole round of the accounts
-- waiting when its account had been at its cap).
local function offer_lane(acct, score, returning, front)
  acct = acct or ''
  if acct ~= '' and redis.call('HEXISTS', P .. 'blocked', acct) == 1 then return end
  local waiting = redis.call('ZSCORE', P .. 'passes', acct)
  local stride = stride_of(score)
  if front then
    redis.call('ZREM', P .. 'idle', acct)
    redis.call('ZADD', P .. 'passes', 'LT', redis.call('INCR', P .. 'vt'), acct)
  elseif not waiting then
    local pass = redis.call('INCR', P .. 'vt')
    if returning then
      pass = pass + stride
    else
      pass = pass + stride / 100
      local due = redis.call('ZSCORE', P .. 'idle', acct)
      if due then
        -- its remembered turn, but never later than its own stride from now: an urgent
        -- job does not wait out the turn a routine one left
        redis.call('ZREM', P .. 'idle', acct)
        pass = math.max(pass, math.min(tonumber(due), pass - stride / 100 + stride))
      end
    end
    redis.call('ZADD', P .. 'passes', pass, acct)
  elseif score < 9 * BAND then
    -- a more urgent job joined a waiting lane: its turn comes within its own stride
    -- (LT: never later than it was; a priority-0 job changes nothing)
    local vt = tonumber(redis.call('GET', P .. 'vt')) or 0
    redis.call('ZADD', P .. 'passes', 'LT', vt + stride, acct)
  end
end
-- `n` entries left the lanes (taken, cancelled or found stale).
local function lane_taken(n)
  if n > 0 then redis.call('DECRBY', P .. 'queued', n) end
end
-- Adds (score, id, ...) to the account's lane; an id already there only moves.
local function lane_add(acct, ...)
  local added = redis.call('ZADD', lane_key(acct), ...)
  if added > 0 then redis.call('INCRBY', P .. 'queued', added) end
end
local function add_ready(id, acct, score)
  lane_add(acct, score, id)
  offer_lane(acct, score)
end
-- A job leaves its lane other than by a turn (a cancel). The lane it empties leaves
-- `passes` (it has nothing to offer, and no account waits there), its pass remembered in
-- `idle` as a fetch remembers a lane it emptied: a job that comes for it later starts no
-- earlier than the turn it had, so cancelling gains an account nothing.
local function remove_ready(id, acct)
  lane_taken(redis.call('ZREM', lane_key(acct), id))
  acct = acct or ''
  if redis.call('EXISTS', lane_key(acct)) == 1 then return end
  local pass = redis.call('ZSCORE', P .. 'passes', acct)
  if pass then
    redis.call('ZREM', P .. 'passes', acct)
    redis.call('ZADD', P .. 'idle', pass, acct)
  end
end
-- Runs of `acct` ended (settled, released or reclaimed): they stop counting against
-- the account's cap, and a lane blocked at the cap is offered again (at the front when
-- one of them was `handed_back`, see offer_lane).
local function runs_of_account_ended(acct, handed_back, ...)
  redis.call('SREM', P .. 'hold:' .. acct, ...)
  if redis.call('HDEL', P .. 'blocked', acct) == 1 then
    local head = redis.call('ZRANGE', lane_key(acct), 0, 0, 'WITHSCORES')
    if head[2] then
      offer_lane(acct, tonumber(head[2]), true, handed_back)
      wake()
    end
  end
end
-- One run ended (`unstarted_done`: the caller takes it out of `unstarted` itself, in
-- one batch; `handed_back`: its job went back to its lane's front).
local function run_ended(id, acct, unstarted_done, handed_back)
  if not unstarted_done then redis.call('ZREM', P .. 'unstarted', id) end
  if not acct or acct == '' then return end
  runs_of_account_ended(acct, handed_back, id)
end
-- The same for many runs (settle): `ended` is account -> ids, each account written once;
-- `handed` names the accounts one of whose runs was handed back.
local function runs_ended(ended, handed)
  for acct, ids in pairs(ended) do
    runs_of_account_ended(acct, handed[acct], unpack(ids))
  end
end
-- Whether the sync `holder` (the account's `excl:` holder) is under way, so a new sync
-- of the account is that one: queued, running, parked by the marketplace's limits (a
-- snooze waiting for its slot, a cooldown or a breaker), or interrupted (a snooze until
-- a dependency answers again, or a turn handed back). One scheduled for later or
-- waiting to retry after a failure is not, nor is one whose cancel is pending (it is
-- about to end cancelled).
local function sync_under_way(holder)
  local f = redis.call('HMGET', P .. 'job:' .. holder, 'st', 'er', 'cx')
  local st = f[1]
  if f[3] == '1' then return nil end
  if st == 'queued' or st == 'running' then return st end
  if st == 'scheduled' and (park_reason(f[2]) or interrupted_message(f[2])) then return st end
  return nil
end
-- A job's payload JSON as a table (nil when it is not an object).
local function payload_table(payload)
  local ok, p = pcall(cjson.decode, payload or '')
  if ok and type(p) == 'table' then return p end
  return nil
end
-- The marketplace a sync's payload (`p`, a table from `payload_table`) walks ('' for
-- none named): the field of `exclm:<account>` that names its sync made beside the
-- account's `excl:` holder.
local function marketplace_of(p)
  if p and type(p.marketplace_id) == 'string' then return p.marketplace_id end
  return ''
end
-- A sync's end releases what names it: the account's `excl:` and its marketplace's field
-- of `exclm:` (before, found by the eighth stop's review, the field outlived it: one
-- stale field a marketplace of every account that ever synced two at once). The hash
-- holds a field per marketplace the account synced beside another's, a handful.
local function release_exclusive(id, acct)
  if EXCLUSIVE and acct and acct ~= '' then
    local k = P .. 'excl:' .. acct
    if redis.call('GET', k) == id then
      redis.call('DEL', k)
    end
    local m = P .. 'exclm:' .. acct
    local named = redis.call('HGETALL', m)
    for i = 1, #named, 2 do
      if named[i + 1] == id then redis.call('HDEL', m, named[i]) end
    end
  end
end
-- Dead-letter groups (docs/architecture.md, "Dead-letter groups"). A dead job's error
-- signature `sg` is a hash of its error class and its message's shape: quoted text and
-- every word of 4+ characters holding a digit (ids, SKUs, dates, counts) masked, so
-- 2,000 failures that differ only by SKU are one group. Kept when a job dies and when it
-- leaves the dead letter (replayed, discarded, trimmed), so every figure is a read:
-- `dg` (sig -> jobs), `dgm` (sig -> {"class","message"} of the shape), `dgf` / `dgl`
-- (sig -> first / last death ms), `dg:<sig>` (its jobs by death ms), and per account
-- `dga:<acct>` (sig -> jobs, sig:f, sig:l).
local function error_shape(message)
  local m = string.sub(message or '', 1, 400)
  m = string.gsub(m, '"[^"]*"', '"?"')
  m = string.gsub(m, "'[^']*'", "'?'")
  m = string.gsub(m, '[%w_]*%d[%w_]*', function(word)
    if #word >= 4 then return '#' end
  end)
  m = string.gsub(m, '%s+', ' ')
  return m
end
-- An error's dead-letter signature, with its class and masked message.
local function signature_of(err)
  local class, message = 'unknown', ''
  local ok, e = pcall(cjson.decode, err or '')
  if ok and type(e) == 'table' then
    if type(e.class) == 'string' then class = e.class end
    if type(e.message) == 'string' then message = e.message end
  end
  local shape = error_shape(message)
  return string.sub(redis.sha1hex(class .. '\n' .. shape), 1, 16), class, shape
end
-- `need`s the keys of group `sig` that joining or leaving it touches for `acct`.
local function need_group_keys(sig, acct)
  need(P .. 'dg:' .. sig)
  if acct and acct ~= '' then
    need(P .. 'dgj:' .. sig .. ':' .. acct)
    need(P .. 'dga:' .. acct)
  end
end
local function dead_joined(id, err, at)
  local key = P .. 'job:' .. id
  local sig, class, shape = signature_of(err)
  local acct = redis.call('HGET', key, 'acct')
  if acct and acct ~= '' then
    -- counted among its account's dead jobs (`dgn`; `dn` says so, for dead_left)
    redis.call('HSET', key, 'sg', sig, 'dn', '1')
    redis.call('ZINCRBY', P .. 'dgn', 1, acct)
  else
    redis.call('HSET', key, 'sg', sig)
  end
  redis.call('ZADD', P .. 'dg:' .. sig, at, id)
  if redis.call('HINCRBY', P .. 'dg', sig, 1) == 1 then
    redis.call('HSET', P .. 'dgm', sig, cjson.encode({class = class, message = shape}))
    redis.call('HSET', P .. 'dgf', sig, at)
  end
  redis.call('HSET', P .. 'dgl', sig, at)
  if acct and acct ~= '' then
    -- the account's own index of the group, so a scoped listing never walks another's
    redis.call('ZADD', P .. 'dgj:' .. sig .. ':' .. acct, at, id)
    local ak = P .. 'dga:' .. acct
    if redis.call('HINCRBY', ak, sig, 1) == 1 then
      redis.call('HSET', ak, sig .. ':f', at)
    end
    redis.call('HSET', ak, sig .. ':l', at)
  end
end
local function dead_left(id)
  local key = P .. 'job:' .. id
  local f = redis.call('HMGET', key, 'sg', 'acct', 'dn')
  local sig = f[1]
  if not sig or sig == '' then return end
  redis.call('HDEL', key, 'sg', 'dn')
  if f[3] == '1' and f[2] and f[2] ~= '' and tonumber(redis.call('ZINCRBY', P .. 'dgn', -1, f[2])) <= 0 then
    redis.call('ZREM', P .. 'dgn', f[2])
  end
  redis.call('ZREM', P .. 'dg:' .. sig, id)
  if redis.call('HINCRBY', P .. 'dg', sig, -1) <= 0 then
    redis.call('HDEL', P .. 'dg', sig)
    redis.call('HDEL', P .. 'dgm', sig)
    redis.call('HDEL', P .. 'dgf', sig)
    redis.call('HDEL', P .. 'dgl', sig)
    redis.call('DEL', P .. 'dg:' .. sig)
  end
  if f[2] and f[2] ~= '' then
    redis.call('ZREM', P .. 'dgj:' .. sig .. ':' .. f[2], id)
    local ak = P .. 'dga:' .. f[2]
    if redis.call('HINCRBY', ak, sig, -1) <= 0 then
      redis.call('HDEL', ak, sig, sig .. ':f', sig .. ':l')
    end
  end
end
-- A backfill's next batch of `index` (by score) from the position kept in `cur` up to
-- `upto`: the ids of up to `limit` members, and every member at the batch's last score
-- (so the next call can start after it), and that score. nil once none is left. The
-- caller moves the position past them (`SET cur '(' .. last`) once it takes them.
local function backfill_batch(index, cur, upto, limit)
  local from = redis.call('GET', cur) or '-inf'
  local batch = redis.call('ZRANGE', index, from, upto, 'BYSCORE', 'LIMIT', 0, limit, 'WITHSCORES')
  if #batch == 0 then return nil end
  local last = batch[#batch]
  local ids = {}
  for i = 1, #batch, 2 do ids[#ids + 1] = batch[i] end
  for _, id in ipairs(redis.call('ZRANGE', index, last, last, 'BYSCORE')) do ids[#ids + 1] = id end
  return ids, last
end
-- Per-account counts by state (docs/architecture.md, "Per-account counts"). `as:<acct>`
-- (HASH) counts the account's jobs in each state that has no per-account index of its
-- own — scheduled, retrying, succeeded, partial, dead, cancelled (queued is the lane's
-- ZCARD, running the hold's SCARD). A job's `ac` = '1' says its present state is
-- counted: every job enqueued since the counts are kept, and an older one once the
-- backfill (account_counts.lua) or its next move into a counted state counted it.
local COUNTED = {scheduled = true, retrying = true, succeeded = true, partial = true, dead = true, cancelled = true}
-- A script that moves many jobs (settle) defers its counter moves (`defer_tallies`)
-- and writes each account's net moves once at its end (`flush_tallies`).
local function tally(acct, state, by)
  if acct and acct ~= '' and COUNTED[state] then
    if tallies then
      local t = list_in(tallies, acct)
      t[state] = (t[state] or 0) + by
    else
      redis.call('HINCRBY', P .. 'as:' .. acct, state, by)
    end
  end
end
local function defer_tallies()
  tallies = {}
end
local function flush_tallies()
  for acct, t in pairs(tallies) do
    for state, by in pairs(t) do
      if by ~= 0 then redis.call('HINCRBY', P .. 'as:' .. acct, state, by) end
    end
  end
  tallies = nil
end
-- The job `key` of `acct` (`counted`: its `ac`) moved from state `from` to `to`.
local function recount(key, acct, counted, from, to)
  if from == to or not acct or acct == '' then return end
  if counted == '1' then
    tally(acct, from, -1)
  elseif COUNTED[to] then
    redis.call('HSET', key, 'ac', '1')
  else
    return -- an uncounted job stays so until it reaches a counted state
  end
  tally(acct, to, 1)
end
-- Completion callbacks (docs/architecture.md, "Completion callbacks"). A job with a
-- callback URL (`cb`) that ends is due for delivery in the same script that ends it, so
-- no ended job lacks its delivery: `cbn` counts its endings (the delivery id is
-- `<id>:<cbn>`), `cbe` is how this ending looked (a replay later does not change it),
-- `cbt` the tries so far, `cbl` the claim of the try in flight, `cbx` the delivery's
-- status; `cbdue` holds the kind's deliveries by when their next try is due. An ending
-- while the last one's delivery is still being tried (a replayed job that ended again)
-- waits as `cbq` until that delivery ends (`callback_next`): receivers get every ending,
-- in order (only the newest of several waiting ones).
local function callback_start(key, id, ended, now)
  redis.call('HINCRBY', key, 'cbn', 1)
  redis.call('HSET', key, 'cbe', ended, 'cbt', 0, 'cbl', '', 'cbx', 'pending', 'cbw', now)
  redis.call('ZADD', P .. 'cbdue', now, id)
end
local function callback_due(id, state, now, err)
  local key = P .. 'job:' .. id
  local f = redis.call('HMGET', key, 'at', 'cbx')
  local ended = '{"state":"' .. state .. '","ended_ms":' .. now .. ',"attempts":' .. (f[1] or '0')
  if err and err ~= '' then ended = ended .. ',"error":' .. err end
  ended = ended .. '}'
  if f[2] == 'pending' then
    redis.call('HSET', key, 'cbq', ended)
  else
    callback_start(key, id, ended, now)
  end
end
-- A delivery has ended (delivered or given up): the ending that waited for it, if any,
-- is due now.
local function callback_next(id, now)
  local key = P .. 'job:' .. id
  local waiting = redis.call('HGET', key, 'cbq')
  if waiting then
    redis.call('HDEL', key, 'cbq')
    callback_start(key, id, waiting, now)
  end
end
-- Moves a job into a terminal state; the caller adds it to the state index (in bulk
-- where it can). `cb`: the job's callback URL, read by the caller with what it reads
-- anyway (false or nil: none); `was`: {state, account, ac} when the caller read them
-- too (nil: read here); `last`: the succeeding run's short record (settle.lua), kept
-- as `la` in the same write.
local function finish_fields(id, state, now, field, value, cb, was, last)
  local key = P .. 'job:' .. id
  was = was or redis.call('HMGET', key, 'st', 'acct', 'ac')
  local now_s = ms_str(now)
  if last then
    redis.call('HSET', key, 'st', state, 'fa', now_s, 'ls', '', field, value, 'la', last)
  else
    redis.call('HSET', key, 'st', state, 'fa', now_s, 'ls', '', field, value)
  end
  recount(key, was[2], was[3], was[1], state)
  if state == 'dead' then
    dead_joined(id, value, now)
    count_event('died')
  end
  if EXCLUSIVE then
    release_exclusive(id, was[2])
  end
  if cb and cb ~= '' then
    local err = nil
    if field == 'er' then err = value end
    callback_due(id, state, now, err)
  end
end
local function finish(id, state, now, field, value, cb, was)
  finish_fields(id, state, now, field, value, cb, was)
  redis.call('ZADD', P .. 'state:' .. state, ms_str(now), id)
end
-- Back to its lane. A job handed back (its worker died or shut down) goes to
-- the front of its priority band, ordered by creation time, instead of behind the
-- whole backlog: it has waited once already.
-- A job put back at the front of its lane (a turn given away, a hand-back, a reclaim)
-- is placed by its creation but has waited only since `now`: what the lag counts. Kept
-- in the record (`qa`, read by the fetch that leases it) and in `readysince` (read by
-- queue_stats.lua for the lanes' heads), the newest READY_SINCE_KEPT of them; a fetch
-- that leases such a job takes it out of `readysince`, and a job queued again later
-- counts from the later of the two times, so a stale `qa` is harmless.
local READY_SINCE_KEPT = 10000
local function note_ready_since(id, key, now)
  redis.call('HSET', key, 'qa', now)
  redis.call('ZADD', P .. 'readysince', now, id)
  if redis.call('ZCARD', P .. 'readysince') > READY_SINCE_KEPT then
    redis.call('ZREMRANGEBYRANK', P .. 'readysince', 0, -READY_SINCE_KEPT - 1)
  end
end
local function queue_ready(id, now, front)
  local key = P .. 'job:' .. id
  local f = redis.call('HMGET', key, 'pr', 'ca', 'acct')
  local at = now
  if front then
    at = tonumber(f[2]) or now
    note_ready_since(id, key, now)
  end
  redis.call('HSET', key, 'st', 'queued', 'ua', now)
  local score = ready_score(f[1], at)
  lane_add(f[3], score, id)
  offer_lane(f[3], score, false, front)
end
-- The attempt history keeps the newest ATTEMPTS_KEPT records; `at` (attempts used)
-- and `sn` (snoozes) keep counting past it.
local ATTEMPTS_KEPT = 50
local function push_attempt(id, json)
  local key = P .. 'attempts:' .. id
  if redis.call('RPUSH', key, json) > ATTEMPTS_KEPT then
    redis.call('LTRIM', key, -ATTEMPTS_KEPT, -1)
  end
end
-- Redis's own record of when it served this queue's workers (fetches and renewals),
-- so a reclaim can tell a holder that stopped renewing while Redis answered everyone
-- (dead or cut off: reclaim at once) from a Redis that stopped serving (a restart or
-- a pause: give the holder a grace to renew). Gaps of 50 ms or more are kept, the
-- newest 32, as `<end>` scored members `<end>:<length>`.
--
-- After a gap, whichever call comes first (a fetch or a renewal) also looks at whether
-- Redis restarted since it last served the queue (its run id, kept in `runid`, changed:
-- a restart from an RDB snapshot or an AOF, a failover to a replica). Leases written
-- just before it went down may be lost, so `restarted` keeps when that was seen: a
-- fetch leases nothing for a lease and a second after it (fetch.lua). INFO is refused
-- to a user without @dangerous: then no restart is seen.
local function note_served(now)
  local prev = tonumber(redis.call('SET', P .. 'seen', now, 'GET'))
  local gap = prev and (now - prev) or 1e12
  -- A clock behind the last serve's (a failover to a replica whose clock is behind, a
  -- clock stepped back): how long Redis was away is unknown, so it counts as an outage.
  if gap < 0 then gap = 1e12 end
  if gap >= 50 then
    redis.call('ZADD', P .. 'gaps', now, now .. ':' .. gap)
    redis.call('ZREMRANGEBYRANK', P .. 'gaps', 0, -33)
    local ok, info = pcall(redis.call, 'INFO', 'server')
    local id = ok and type(info) == 'string' and string.match(info, 'run_id:(%x+)')
    if id then
      local was = redis.call('SET', P .. 'runid', id, 'GET')
      if was and was ~= id then redis.call('SET', P .. 'restarted', ms_str(now)) end
    end
  end
end
-- Whether Redis stopped serving this queue for `len` ms or more after `since`.
local function outage_since(since, len)
  for _, m in ipairs(redis.call('ZRANGE', P .. 'gaps', '(' .. since, '+inf', 'BYSCORE')) do
    if tonumber(string.match(m, ':(%d+)$')) >= len then return true end
  end
  return false
end
