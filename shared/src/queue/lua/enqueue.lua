-- Enqueues n jobs (one for a single enqueue, many for bulk) in one call.
-- ARGV: prefix, n, idem_ttl_s, cap (most unfinished jobs an account may keep in this
--       queue; 0: no cap), then n times: id, payload, account, priority,
--       max_attempts, timeout_ms, and either '' (a plain job: nothing else set) or '+'
--       and run_at_ms, delay_ms, idem_key, idem_fingerprint, exclusive, traceparent,
--       trigger, callback_url, callback_secret (sealed, base64), answer_waiting ('1': the
--       reply says why the job waits, as waiting.lua would)
-- -> per job, in order: 'q' or 's' for a job created queued or scheduled that did not
--    ask why it waits (the caller knows the id it sent: one short string instead of six
--    for almost every job), or else six: status ('created' | 'existing' | 'conflict'),
--    id, state, reason|'', until_ms|'', detail_json|'' (reason '' when not asked or not
--    waiting). Status 'full': the job's account keeps `cap` unfinished jobs (the count in
--    state's place); nothing was written for it.
-- A job with a callback comes with its id (the sealed secret is bound to it): an id
-- already taken is a conflict, never an overwrite.
-- KEYS: the queue's keys an enqueue touches, each job's record and idempotency key, and
-- its account's keys (index, lane, counts, exclusive sync, running jobs). A job that an
-- idempotency key or an account's exclusive sync names is known only once read: a call
-- that meets one it was not given answers {'need', keys} before writing anything, and is
-- made again with them (common.lua: need).
local n, idem_ttl, cap = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if not ALL_DECLARED then
  local b = 5
  for _ = 1, n do
    local o = ARGV[b + 6] == '+' and b + 7 or nil
    if o then
      local idem, acct = ARGV[o + 2], ARGV[b + 2]
      if idem ~= '' then
        local v = redis.call('GET', P .. 'idem:' .. idem)
        local sep = v and string.find(v, '|', 1, true)
        if sep then need(P .. 'job:' .. string.sub(v, 1, sep - 1)) end
      end
      if ARGV[o + 4] == '1' and acct ~= '' then
        local holder = redis.call('GET', P .. 'excl:' .. acct)
        if holder then need(P .. 'job:' .. holder) end
        local beside = redis.call('HGET', P .. 'exclm:' .. acct, marketplace_of(payload_table(ARGV[b + 1])))
        if beside then need(P .. 'job:' .. beside) end
      end
      b = o + 10
    else
      b = b + 7
    end
  end
  if needs then return needs_answer() end
end
local now = now_ms()
local now_s = ms_str(now)
-- the ready score per priority, formatted once (see ms_str)
local score_s = {}
local out = {}
-- `all`'s entries {created, id, ...}, `n_all` of them (a count kept, not `#all` each time)
local all, n_all = {}, 0
-- per lane: {score, id, ...} and the best score added, written once per lane at the end;
-- per account: its index entries {created, id, ...}, likewise
local lanes, best, by_acct = {}, {}, {}
-- per lane: where its pending ids are in `lanes` (built only when a priority is raised)
local slots = {}
local woke = false
-- what a created job that asks for its waiting answer was stored with, so the answer
-- need not read it back
local created = {}
-- A queue with no job yet needs no backfill of its per-account counts (account_counts.lua)
-- nor of its dead-letter groups (dead_groups.lua).
local fresh = redis.call('EXISTS', P .. 'all') == 0

-- `field`, `value` added to `fields` unless the value is empty
local function also(fields, field, value)
  if value ~= '' then
    fields[#fields + 1] = field
    fields[#fields + 1] = value
  end
end

-- Whether this call ran before: the same call sent again after its reply was lost (a
-- cluster client does that). Ids are new for each job and a call runs whole, so a job of
-- it that is written whatever the queue holds (no idempotency key, not de-duplicated,
-- its id not made before: a plain job) tells for all with one read. A call without such
-- a job looks at each job's own record (nil: not known). Not a job that merely came
-- first to its write: whether a job merges into its account's sync under way, or into
-- an idempotency key's job, can differ between the two sends. Nor is such a job written
-- when its account is at its cap (take_room): the first send then notes its id in
-- `refused` (a few minutes, see REFUSED_MS), which the second reads too.
local REFUSED_MS = 300000
local sent_again, marker
do
  local b = 5
  for _ = 1, n do
    local o = ARGV[b + 6] == '+' and b + 7 or nil
    if not o or (ARGV[o + 2] == '' and ARGV[o + 4] ~= '1' and ARGV[o + 7] == '') then
      marker = ARGV[b]
      sent_again = redis.call('EXISTS', P .. 'job:' .. marker) == 1
        or (cap > 0 and redis.call('ZSCORE', P .. 'refused', marker) ~= false)
      break
    end
    b = o + 10
  end
end
-- The cap on unfinished jobs per account: room[acct] is how many more this call may
-- create. An account's unfinished jobs are those in its index that have not ended: the
-- index's ZCARD less its ended counts (`as:`). The ZCARD alone bounds them from above,
-- so the ended counts are read only for an account it puts at the cap (`exact`): one
-- read per account and call for most. Counts a backfill has yet to complete (no
-- `acdone`) would be too low, so the cap waits for them.
local room, exact = {}, {}
local counted = cap > 0 and (fresh or redis.call('EXISTS', P .. 'acdone') == 1)
-- Takes one place of `acct`'s room; false (and how many it keeps) when it has none.
local function take_room(acct)
  if not counted or acct == '' then return true end
  local r = room[acct] or (cap - redis.call('ZCARD', P .. 'acct:' .. acct))
  if r <= 0 and not exact[acct] then
    exact[acct] = true
    local ended = redis.call('HMGET', P .. 'as:' .. acct, 'succeeded', 'partial', 'dead', 'cancelled')
    for _, c in ipairs(ended) do r = r + (tonumber(c) or 0) end
  end
  if r <= 0 then
    room[acct] = r
    return false, cap - r
  end
  room[acct] = r - 1
  return true
end

-- What the sync under way `other` (in state `st`) makes of a new sync's payload (`b`,
-- a table from `payload_table`, or nil):
-- 'other' when it walks another marketplace (one of another is not the same work);
-- 'same' when it covers the request — every resource asked for, and the same `since` —
-- after taking on the resources it lacked while it is still queued; nil when it is of
-- the same marketplace and does not cover it (before, found by the fifth audits of
-- 2026-12-06, it was the new one whatever it asked for: a sync of `listings` submitted
-- while one of `orders` waited never synced the listings).
local function covered_by(other, st, b)
  local key = P .. 'job:' .. other
  local held = redis.call('HGET', key, 'p')
  if not held then return 'same' end
  local a = payload_table(held)
  if not (a and b) then return 'same' end
  if a.marketplace_id ~= b.marketplace_id then return 'other' end
  if a.since ~= b.since then return nil end
  local have = type(a.resources) == 'table' and a.resources or {}
  local seen, missing = {}, {}
  for _, r in ipairs(have) do seen[r] = true end
  for _, r in ipairs(type(b.resources) == 'table' and b.resources or {}) do
    if not seen[r] then
      seen[r] = true
      missing[#missing + 1] = r
    end
  end
  if #missing == 0 then return 'same' end
  if st ~= 'queued' then return nil end
  for _, r in ipairs(missing) do have[#have + 1] = r end
  a.resources = have
  redis.call('HSET', key, 'p', cjson.encode(a))
  return 'same'
end

-- A sync under way answering a new one takes on a higher priority the new one asks for
-- (before, found by the fifth audits of 2026-12-06, it kept its own, so an urgent sync
-- waited as the routine one it was answered with). A queued one moves up its account's
-- lane, keeping its place among jobs of its new priority, and the lane's turn comes
-- within that priority's stride, as when a more urgent job joins a waiting lane; one
-- parked or running has it for its next time in the lane.
-- One made earlier in this call has its lane entry among those written at the end
-- (`lanes`), which is where it moves (before, found by the review of this fix, it kept
-- the priority it was made with there). The ready time is the score's part below BAND.
local function take_priority(id, st, prio)
  local key = P .. 'job:' .. id
  local f = redis.call('HMGET', key, 'pr', 'acct')
  local was, want = tonumber(f[1]) or 0, tonumber(prio) or 0
  if want <= was then return end
  redis.call('HSET', key, 'pr', want)
  if st ~= 'queued' then return end
  local acct = f[2] or ''
  local pending = lanes[acct]
  if pending then
    -- where each pending id is, indexed once however many raises the call holds
    local at = slots[acct]
    if not at then
      at = {n = 0}
      slots[acct] = at
    end
    for i = at.n + 1, #pending, 2 do at[pending[i + 1]] = i end
    at.n = #pending
    local i = at[id]
    if i then
      local score = ready_score(want, tonumber(pending[i]) % BAND)
      pending[i] = string.format('%.0f', score)
      if score < best[acct] then best[acct] = score end
      return
    end
  end
  local old = redis.call('ZSCORE', lane_key(acct), id)
  if not old then return end
  local score = ready_score(want, tonumber(old) % BAND)
  lane_add(acct, 'XX', score, id)
  offer_lane(acct, score)
end

-- The answer for a job already made (`id` in state `st`), with a write that changes
-- nothing: the durability wait after this call counts its connection's writes, and on
-- Redis 7.2 and later a call that wrote nothing leaves that mark where it was, so the
-- wait answered at once for a job no replica had yet (found by the durability audit of
-- 2026-12-07, second: a retry with the same Idempotency-Key on another API replica got
-- 200 for a job a failover then lost). Replicas apply writes in order: one that has this
-- write has the job.
local function already(id, st)
  redis.call('HSET', P .. 'job:' .. id, 'st', st)
  return 'existing', id, st
end

-- The job whose arguments start at ARGV[b]; `o`: where its options start (nil: a plain job).
local function enqueue(b, o)
  local id, payload, acct = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local prio, max_attempts, timeout = ARGV[b + 3], ARGV[b + 4], ARGV[b + 5]
  local run_at, delay, idem, fp, exclusive, traceparent = 0, 0, '', '', '0', ''
  local trigger, callback, callback_secret = '', '', ''
  if o then
    run_at, delay = tonumber(ARGV[o]), tonumber(ARGV[o + 1])
    idem, fp, exclusive, traceparent = ARGV[o + 2], ARGV[o + 3], ARGV[o + 4], ARGV[o + 5]
    trigger, callback, callback_secret = ARGV[o + 6], ARGV[o + 7], ARGV[o + 8]
  end

  local key = P .. 'job:' .. id
  -- A record under this id is this very job, written by the first send of this call (or,
  -- for an id made before, a callback's, one already taken): it is answered as it
  -- stands, before anything is written for it — never written again (back to queued,
  -- counted twice, run twice), nor its account's sync pointed at it.
  if sent_again ~= false or callback ~= '' then
    local now_st = redis.call('HGET', key, 'st')
    if now_st then
      return already(id, now_st)
    end
  end

  local idem_key = idem ~= '' and (P .. 'idem:' .. idem) or nil
  if idem ~= '' then
    local v = redis.call('GET', idem_key)
    if v then
      local sep = string.find(v, '|', 1, true)
      local existing, efp = string.sub(v, 1, sep - 1), string.sub(v, sep + 1)
      local st = redis.call('HGET', P .. 'job:' .. existing, 'st')
      -- A key whose job has been trimmed is free again, whatever the body.
      if st then
        if efp ~= fp then
          return 'conflict', existing, ''
        end
        return already(existing, st)
      end
    end
  end

  local ekey, mkey, mkt
  if exclusive == '1' and acct ~= '' then
    -- the request, decoded once for every comparison below
    local asked = payload_table(payload)
    ekey = P .. 'excl:' .. acct
    local holder = redis.call('GET', ekey)
    if holder then
      -- Only a sync under way (queued, running or parked by the marketplace's limits)
      -- swallows a new one: a sync scheduled for later or waiting to retry must not
      -- hold back the ones due now.
      local st = sync_under_way(holder)
      local seen = st and covered_by(holder, st, asked)
      if seen == 'same' then
        if idem ~= '' then
          redis.call('SET', idem_key, holder .. '|' .. fp, 'EX', idem_ttl)
        end
        take_priority(holder, st, prio)
        return already(holder, st)
      elseif seen == 'other' then
        -- the sync under way is of another of the account's marketplaces: this one is
        -- made beside it (it would sync nothing of this marketplace), and the
        -- account's key stays with it
        ekey = nil
      end
      -- (one of this marketplace that does not cover the request: this one is made,
      -- to run after it, and the account's key moves to it)
    end
    -- A sync made beside the holder is named in `exclm:<account>` under its
    -- marketplace, and is that marketplace's sync while it is under way, whether or
    -- not the holder still is (before, found by the seventh audits of 2026-12-07, each
    -- further sync of that marketplace was made again).
    mkey, mkt = P .. 'exclm:' .. acct, marketplace_of(asked)
    local beside = redis.call('HGET', mkey, mkt)
    local st = beside and beside ~= holder and sync_under_way(beside)
    if st and covered_by(beside, st, asked) == 'same' then
      if idem ~= '' then
        redis.call('SET', idem_key, beside .. '|' .. fp, 'EX', idem_ttl)
      end
      take_priority(beside, st, prio)
      return already(beside, st)
    end
  end
  local has_room, keeps = take_room(acct)
  if not has_room then
    if id == marker then
      redis.call('ZREMRANGEBYSCORE', P .. 'refused', '-inf', now - REFUSED_MS)
      redis.call('ZADD', P .. 'refused', now, id)
    end
    return 'full', id, tostring(keeps)
  end
  if ekey then
    redis.call('SET', ekey, id)
  elseif mkey then
    redis.call('HSET', mkey, mkt, id)
  end

  local due = now
  if run_at > 0 then
    due = run_at
  elseif delay > 0 then
    due = now + delay
  end
  local state = 'queued'
  if due > now then state = 'scheduled' end

  -- one HSET with every field the job starts with (a table only when it has extras).
  -- Fields that would be empty or say what their absence says are left out: `ua`
  -- (updated = created until the first change), `tp`, `ik`. `at` stays: the previous
  -- release's fetch numbers a run `tonumber(at) + 1`, and its workers lease these jobs
  -- during a rolling upgrade.
  if trigger == '' and callback == '' and state ~= 'scheduled' and traceparent == '' and idem == '' then
    redis.call('HSET', key, 'v', '1', 'st', state, 'p', payload, 'pr', prio, 'ma', max_attempts,
      'at', '0', 'to', timeout, 'ca', now_s, 'acct', acct, 'ac', '1')
  else
    local fields = {'v', '1', 'st', state, 'p', payload, 'pr', prio, 'ma', max_attempts,
      'at', '0', 'to', timeout, 'ca', now_s, 'acct', acct, 'ac', '1'}
    also(fields, 'tp', traceparent)
    also(fields, 'ik', idem)
    also(fields, 'tg', trigger)
    also(fields, 'cb', callback)
    also(fields, 'cbs', callback_secret)
    if state == 'scheduled' then
      also(fields, 'ra', string.format('%.0f', due))
    end
    redis.call('HSET', key, unpack(fields))
  end
  if acct ~= '' then
    push_pair(by_acct, acct, now_s, id)
  end
  if idem ~= '' then
    redis.call('SET', idem_key, id .. '|' .. fp, 'EX', idem_ttl)
  end
  all[n_all + 1], all[n_all + 2] = now_s, id
  n_all = n_all + 2
  if state == 'scheduled' then
    tally(acct, 'scheduled', 1)
    redis.call('ZADD', P .. 'scheduled', due, id)
  else
    local score = ready_score(prio, now)
    local s = score_s[prio]
    if not s then
      s = string.format('%.0f', score)
      score_s[prio] = s
    end
    push_pair(lanes, acct, s, id)
    if not best[acct] or score < best[acct] then best[acct] = score end
  end
  woke = true
  if o and ARGV[o + 9] == '1' then
    created[id] = {st = state, acct = acct, due = (state == 'scheduled') and string.format('%.0f', due) or ''}
  end
  return 'created', id, state
end

local answer = {}
local b = 5
local n_out = 0
for _ = 1, n do
  local opts = nil
  if ARGV[b + 6] == '+' then opts = b + 7 end
  local status, id, state = enqueue(b, opts)
  local asks = opts and ARGV[opts + 9] == '1'
  if status == 'created' and not asks then
    n_out = n_out + 1
    out[n_out] = (state == 'queued') and 'q' or 's'
  else
    local o = n_out
    out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5], out[o + 6] = status, id, state, '', '', ''
    if (status == 'created' or status == 'existing') and asks then answer[#answer + 1] = o + 1 end
    n_out = o + 6
  end
  if opts then b = opts + 10 else b = b + 7 end
end
if n_all > 0 then
  redis.call('ZADD', P .. 'all', unpack(all))
  if fresh then redis.call('MSET', P .. 'acdone', 1, P .. 'dgdone', 1, P .. 'dgjdone', 1, P .. 'dgndone', 1) end
end
for acct, mine in pairs(by_acct) do
  redis.call('ZADD', P .. 'acct:' .. acct, unpack(mine))
end
for acct, lane in pairs(lanes) do
  lane_add(acct, unpack(lane))
  offer_lane(acct, best[acct])
end
-- Why each job that asked waits, read once every job of the call is in place.
for _, at in ipairs(answer) do
  local reason, due, detail = waiting_of(out[at + 1], created[out[at + 1]])
  if reason then
    out[at + 3], out[at + 4], out[at + 5] = reason, due, detail
  end
end
-- Wake an idle worker: for a scheduled job it learns the new earliest due time.
if woke then wake() end
return out
