-- Promotes due jobs, reclaims expired leases (both in bounded chunks), then leases up
-- to `max` ready jobs to `worker`, the accounts with queued jobs taking turns.
-- ARGV: prefix, max, worker, lease_ms, chunk, per-account cap (0: none), reports starts
--       (1: the worker marks each run started with start.lua, so a lease it never
--       started can be handed back without using an attempt)
-- KEYS: the queue's own keys a fetch touches, and the keys its caller was told to
-- declare by its previous fetch (`hints`): job records, histories, and accounts' lanes,
-- running jobs, counts and exclusive syncs. A due job, an expired lease or a lane whose
-- keys were not declared waits for the next call, which declares them (issue 16).
-- -> {jobs, wait_ms, hints, needed}; jobs = {'<id> <v> <at> <ma> <to> <sa> <mb> <token>', tp, p, ...}
--    (an absent field empty);
--    wait_ms = ms until the next job falls due or lease expires (-1: nothing pending, or
--    a full batch; 0: ask again now); hints = the keys the next call should declare; needed = 1 when this
--    call passed over work for want of a key (the caller asks again at once)
local max, worker, lease_ms, chunk = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local cap = tonumber(ARGV[6]) or 0
local MAX_UNSTARTED_HANDBACKS = 3
local reports_starts = ARGV[7] == '1'
local now = now_ms()
local now_s, deadline_s = ms_str(now), string.format('%.0f', now + lease_ms)
-- keys this call declared that the next needs again (work passed over, lanes served)
local carry = {}
local LOST_ERR = {class = 'lost', message = 'the worker stopped renewing its lease (crashed or cut off)'}
local LOST_JSON = cjson.encode(LOST_ERR)
-- Whether the keys a move of one of `acct`'s jobs touches were declared: its lane and
-- counts, and with `running` its running jobs, exclusive sync and, for a death, its
-- dead-letter group (each one missing is needed).
local function account_ready(acct, running)
  acct = acct or ''
  local before = needs and #needs or 0
  need(lane_key(acct))
  if acct ~= '' then
    need(P .. 'as:' .. acct)
    if running then
      need(P .. 'hold:' .. acct)
      if EXCLUSIVE then
        need(P .. 'excl:' .. acct)
        need(P .. 'exclm:' .. acct)
      end
    end
  end
  if running then need_group_keys((signature_of(LOST_JSON)), acct) end
  return (needs and #needs or 0) == before
end

-- Promotion keeps due-time order: a job joins its lane as if it had been enqueued
-- when it fell due, ahead of anything enqueued since. A job that gave its turn away
-- (`gw`) joins where it was: as if enqueued when it was created.
local due = redis.call('ZRANGE', P .. 'scheduled', '-inf', now, 'BYSCORE', 'LIMIT', 0, chunk, 'WITHSCORES')
if #due > 0 then
  local ids = {}
  for i = 1, #due, 2 do
    local id, at = due[i], tonumber(due[i + 1])
    local key = P .. 'job:' .. id
    local f = need(key) and redis.call('HMGET', key, 'pr', 'acct', 'st', 'ac', 'gw', 'ca')
    if f and (not f[1] or (f[3] ~= 'scheduled' and f[3] ~= 'retrying')) then
      -- gone, or no longer waiting (an entry left by a write that should have taken it
      -- out): it leaves the index, and the job is not touched — never queued beside a
      -- run of it
      ids[#ids + 1] = id
    elseif f and not account_ready(f[2], false) then
      carry[#carry + 1] = key
    elseif f then
      ids[#ids + 1] = id
      redis.call('HSET', key, 'st', 'queued', 'ua', now, 'ra', '')
      if f[5] then
        -- placed by its creation, ready since it fell due (for the lag)
        redis.call('HDEL', key, 'gw')
        note_ready_since(id, key, at)
        at = tonumber(f[6]) or at
      end
      recount(key, f[2], f[4], f[3], 'queued')
      local score = ready_score(f[1], at)
      if f[5] then
        -- its lane had its turn: it comes back after the lanes waiting (the ones it gave
        -- way for), never at a pass an earlier turn left (audit of 2026-12-07)
        lane_add(f[2], score, id)
        offer_lane(f[2], score, true)
      else
        add_ready(id, f[2], score)
      end
    end
  end
  if #ids > 0 then
    redis.call('ZREM', P .. 'scheduled', unpack(ids))
    redis.call('ZREM', P .. 'retrying', unpack(ids))
    -- the parks promoted are parks no longer; those a chunk left wait, still parked
    for _, r in ipairs(PARK_REASONS) do
      redis.call('ZREM', P .. 'parked:' .. r, unpack(ids))
    end
  end
  -- (and any park a minute overdue: what an older release left)
  for _, r in ipairs(PARK_REASONS) do
    redis.call('ZREMRANGEBYSCORE', P .. 'parked:' .. r, '-inf', now - 60000)
  end
end

-- Reclaim. A lease that ran out while Redis kept serving (no gap of a third of the
-- lease since its last renewal) is reclaimed at once: its holder is dead or cut off,
-- and fences itself. One that ran out across a gap (a restart or pause longer than
-- the lease) is first marked (`sx` = its token) and given a grace of half its lease:
-- a live worker that could not reach Redis renews it then and keeps its run. Only a
-- lease still unrenewed after that is reclaimed.
note_served(now)
local expired = redis.call('ZRANGE', P .. 'active', '-inf', now, 'BYSCORE', 'LIMIT', 0, chunk, 'WITHSCORES')
for e = 1, #expired, 2 do
  local id, deadline = expired[e], tonumber(expired[e + 1])
  local key = P .. 'job:' .. id
  local f = need(key) and need(P .. 'attempts:' .. id) and redis.call('HMGET', key, 'at', 'ma', 'cx', 'w', 'sa', 'ls', 'sx', 'acct', 'll', 'hb', 'cb')
  -- the holder's own lease (`ll`), whatever this fetcher's is
  local ll = f and tonumber(f[9]) or lease_ms
  if not f or (f[1] and not account_ready(f[8], true)) then
    -- its keys were not all declared: the next call reclaims it
    carry[#carry + 1] = key
    carry[#carry + 1] = P .. 'attempts:' .. id
  elseif not f[1] then
    redis.call('ZREM', P .. 'active', id)
  elseif f[7] ~= f[6] and outage_since(deadline - ll, math.max(1, math.floor(ll / 3))) then
    local grace = math.max(1, math.floor(ll / 2))
    redis.call('HSET', key, 'sx', f[6] or '')
    redis.call('ZADD', P .. 'active', now + grace, id)
  elseif f[3] == '1' and redis.call('ZSCORE', P .. 'unstarted', id) then
    -- Cancelled while it waited in the prefetch of a worker that died: it never ran, so
    -- it ends cancelled with its attempt given back and no run recorded (as its worker's
    -- settle would have ended it).
    redis.call('ZREM', P .. 'active', id)
    -- (a job with no run in its life shows no start: settle.lua, `never_ran`)
    if redis.call('HINCRBY', key, 'at', -1) == 0 then redis.call('HDEL', key, 'sa') end
    redis.call('HSET', key, 'w', '', 'sx', '')
    count_event('reclaimed_released')
    finish(id, 'cancelled', now, 'er', '{"class":"cancelled","message":"cancelled before it started"}', f[11])
    run_ended(id, f[8])
  elseif (tonumber(f[10]) or 0) < MAX_UNSTARTED_HANDBACKS and f[3] ~= '1'
    and redis.call('ZSCORE', P .. 'unstarted', id) then
    -- Leased but never started (prefetched by a worker that died): it goes back to
    -- the front of its lane without using an attempt. Bounded, so a job that kills
    -- its worker before the start is reported still runs out of attempts.
    redis.call('ZREM', P .. 'active', id)
    push_attempt(id, cjson.encode({
      number = tonumber(f[1]), worker = f[4] or '', started_ms = tonumber(f[5]) or now, ended_ms = now,
      outcome = 'released',
      error = {class = 'lost', message = 'its worker stopped before the run started; no attempt used'},
    }))
    -- (a job with no run in its life shows no start, as the cancel above and settle.lua;
    -- found by the chaos audit of 2026-12-07, fourth: it kept the dead lease's time)
    if redis.call('HINCRBY', key, 'at', -1) == 0 then redis.call('HDEL', key, 'sa') end
    redis.call('HINCRBY', key, 'hb', 1)
    redis.call('HSET', key, 'w', '', 'sx', '', 'ls', '')
    count_event('reclaimed_released')
    queue_ready(id, now, true)
    run_ended(id, f[8], false, true)
  else
    redis.call('ZREM', P .. 'active', id)
    local err = {class = 'lost', message = 'the worker stopped renewing its lease (crashed or cut off)'}
    push_attempt(id, cjson.encode({
      number = tonumber(f[1]), worker = f[4] or '', started_ms = tonumber(f[5]) or now,
      ended_ms = now, outcome = 'lost', error = err,
    }))
    local err_json = cjson.encode(err)
    redis.call('HSET', key, 'w', '', 'sx', '')
    count_event('reclaimed_lost')
    local again = false
    if f[3] == '1' then
      finish(id, 'cancelled', now, 'er', '{"class":"cancelled","message":"cancelled while its worker was lost"}', f[11])
    elseif tonumber(f[1]) >= tonumber(f[2]) then
      finish(id, 'dead', now, 'er', err_json, f[11])
    else
      redis.call('HSET', key, 'er', err_json, 'ls', '')
      queue_ready(id, now, true)
      again = true
    end
    run_ended(id, f[8], false, again)
  end
end

local jobs = {}
-- set when the turns ran out with lanes still on offer (lanes set aside empty or capped
-- used them): the caller asks again at once rather than wait for a wake-up
local turns_ran_out = false
-- per lane served: its head and next jobs after its last turn (for the hints)
local lane_next = {}
-- Due jobs and expired leases go first (a reclaimed job runs ahead of the backlog): with
-- any of them passed over, the dispatch waits for the next call too.
-- Paused, or held after a restart (note_served): a Redis that restarted may have lost
-- leases written before it went down, and such a job is back in its lane while its
-- holder, not yet fenced, still runs it. Nothing is leased until a lease and a second
-- after the restart was first seen: every live holder's keeper has found its lease gone
-- (or fenced itself) by then. Reclaim and promotion go on; a sweep (max 0) sees the
-- hold too.
local held, hold_left = false, -1
if not needs and redis.call('EXISTS', P .. 'paused', P .. 'restarted') > 0 then
  local seen_at = tonumber(redis.call('GET', P .. 'restarted'))
  if seen_at and now < seen_at + lease_ms + 1000 then
    held, hold_left = true, seen_at + lease_ms + 1000 - now
    -- `restarted` ends with the hold (the longest any fetcher's lease gives it), so why
    -- a job waits (waiting_of) names the hold only while it lasts
    if redis.call('PTTL', P .. 'restarted') < hold_left then
      redis.call('PEXPIRE', P .. 'restarted', hold_left)
    end
  elseif seen_at then
    redis.call('DEL', P .. 'restarted')
  end
  held = held or redis.call('EXISTS', P .. 'paused') > 0
end
if max > 0 and not needs and not held then
  local leases, cancelled, unstarted = {}, {}, {}
  local off_lanes = 0
  local n, turns = 0, 0
  -- One job a lane per turn, in rounds: a round takes the lanes whose passes come first
  -- (as many as jobs are wanted), gives each its turn in pass order, then offers again
  -- those that still hold jobs, each one stride on, with one ZPOPMIN and one ZADD on
  -- `passes` a round. A popped lane whose pass is beyond a pass offered again in this
  -- round goes back unserved with the rest of the round: one turn at a time, that lane
  -- offered again would come first (so the weights hold within a batch). Bounded
  -- whatever the number of accounts: each turn leases a job or sets aside one lane
  -- (empty, or its account at its cap).
  local vt, idle = nil, {}
  -- set once a lane or job was passed over for want of a declared key: the round ends
  -- the dispatch (the next call declares them)
  local stalled = false
  while n < max and turns < max + 100 and not stalled do
    local round = redis.call('ZPOPMIN', P .. 'passes', math.min(max - n, max + 100 - turns))
    if #round == 0 then break end
    local last = #round
    local others = redis.call('ZCARD', P .. 'passes')
    local again, back = {}, {}
    local first_again
    -- the round's lanes from its `from`th on go back with their passes unchanged
    local function put_back(from)
      for j = from, last, 2 do
        back[#back + 1] = round[j + 1]
        back[#back + 1] = round[j]
      end
    end
    for r = 1, last, 2 do
      local acct, pass = round[r], tonumber(round[r + 1])
      if first_again and pass > first_again then
        put_back(r)
        break
      end
      local capped = acct ~= '' and cap > 0
      local hold = P .. 'hold:' .. acct
      if not (need(lane_key(acct)) and (acct == '' or need(hold))) then
        -- its lane's keys were not declared: it and the rest of the round keep their
        -- passes for the next call
        stalled = true
        put_back(r)
        break
      else
      turns = turns + 1
      vt = pass
      local busy = 0
      local room = max - n
      if capped then
        busy = redis.call('SCARD', hold)
        room = math.min(room, cap - busy)
      end
      local served
      local undeclared = {}
      local popped = {}
      if room > 0 then
        -- One job a turn while other accounts wait; a lane alone fills the batch.
        if others > 0 or #again > 0 or r < last - 1 then room = 1 end
        popped = redis.call('ZPOPMIN', lane_key(acct), room)
        local held = {}
        for i = 1, #popped, 2 do
          local id = popped[i]
          local key = P .. 'job:' .. id
          local f = need(key) and redis.call('HMGET', key, 'v', 'p', 'at', 'ma', 'to', 'tp', 'cx', 'cb', 'mb', 'qa')
          if f then
            off_lanes = off_lanes + 1
            served = tonumber(popped[i + 1])
          end
          if not f then
            -- not declared: back in its lane for the next call
            undeclared[#undeclared + 1] = popped[i + 1]
            undeclared[#undeclared + 1] = id
          elseif f[7] == '1' then
            -- a cancel that arrived while it was handed back: it ends here, unrun
            finish_fields(id, 'cancelled', now, 'er', '{"class":"cancelled","message":"cancelled before it ran again"}', f[8])
            cancelled[#cancelled + 1] = now
            cancelled[#cancelled + 1] = id
          elseif f[2] then
            local at = (tonumber(f[3]) or 0) + 1
            local at_s = tostring(at)
            local token = worker .. ':' .. at_s .. ':' .. now_s
            redis.call('HSET', key, 'st', 'running', 'at', at_s, 'ls', token, 'w', worker, 'sa', now_s, 'll', ARGV[4])
            -- a job put back no longer waits: out of the lag's index (only such jobs)
            if f[10] then redis.call('ZREM', P .. 'readysince', id) end
            if reports_starts then
              -- in `unstarted` until the worker says the run started, by ready time, so
              -- the lag still sees a job waiting in a worker's prefetch
              unstarted[2 * n + 1], unstarted[2 * n + 2] = math.max(served % 1e13, tonumber(f[10]) or 0), id
            end
            held[#held + 1] = id
            busy = busy + 1
            leases[2 * n + 1], leases[2 * n + 2] = deadline_s, id
            -- Three strings a job (the client parses each reply element on its own, so
            -- fewer is cheaper for it): `<id> <v> <at> <ma> <to> <sa> <mb> <token>` (the
            -- token last, whatever it holds), the traceparent, the payload. The callback
            -- URL stays in Redis; a replayed job's budget (`mb`) goes out, so its retries
            -- back off from the first step of its new life.
            jobs[3 * n + 1] = id .. ' ' .. (f[1] or '') .. ' ' .. at_s .. ' ' .. (f[4] or '') .. ' ' ..
              (f[5] or '') .. ' ' .. now_s .. ' ' .. (f[9] or '') .. ' ' .. token
            jobs[3 * n + 2], jobs[3 * n + 3] = f[6] or '', f[2]
            n = n + 1
          end
        end
        if acct ~= '' and #held > 0 then redis.call('SADD', hold, unpack(held)) end
        if #undeclared > 0 then redis.call('ZADD', lane_key(acct), unpack(undeclared)) end
      end
      -- The lane's next turn, one stride of its best waiting job on, or aside until one
      -- of its runs ends; an emptied lane's next pass is remembered (`idle`).
      -- its head, and the jobs after it the next call may take (hinted below)
      local head = redis.call('ZRANGE', lane_key(acct), 0, ALL_DECLARED and 0 or #popped + 1, 'WITHSCORES')
      if not ALL_DECLARED then lane_next[acct] = head end
      if #undeclared > 0 then stalled = true end
      if #undeclared > 0 and not served then
        -- nothing it could take was declared: it keeps its pass for the next call
        back[#back + 1] = pass
        back[#back + 1] = acct
      elseif head[2] then
        if capped and busy >= cap then
          redis.call('HSET', P .. 'blocked', acct, cap)
        else
          local nxt = pass + stride_of(tonumber(head[2]))
          again[#again + 1] = nxt
          again[#again + 1] = acct
          if not first_again or nxt < first_again then first_again = nxt end
        end
      elseif served then
        idle[#idle + 1] = pass + stride_of(served)
        idle[#idle + 1] = acct
        -- emptied at its cap: a job that comes before one of its runs ends waits aside
        -- (account busy), not offered as if it could run
        if capped and busy >= cap then redis.call('HSET', P .. 'blocked', acct, cap) end
      end
      if served then
        -- its next job is likely the next call's: its lane stays declared
        carry[#carry + 1] = lane_key(acct)
        if acct ~= '' then carry[#carry + 1] = hold end
      end
      if stalled then
        -- the rest of the round waits for the next call, passes kept
        put_back(r + 2)
        break
      end
      end
    end
    if #back > 0 then redis.call('ZADD', P .. 'passes', unpack(back)) end
    if #again > 0 then redis.call('ZADD', P .. 'passes', unpack(again)) end
  end
  turns_ran_out = n < max and turns >= max + 100 and not stalled and redis.call('ZCARD', P .. 'passes') > 0
  if vt then
    -- `vt` only moves on (lanes offered meanwhile may have moved it past this turn), and
    -- the idle lanes it passed are forgotten
    local cur = tonumber(redis.call('GET', P .. 'vt')) or 0
    if vt > cur then
      redis.call('SET', P .. 'vt', string.format('%.0f', vt))
      redis.call('ZREMRANGEBYSCORE', P .. 'idle', '-inf', vt)
    end
  end
  if #idle > 0 then redis.call('ZADD', P .. 'idle', unpack(idle)) end
  lane_taken(off_lanes)
  if #leases > 0 then redis.call('ZADD', P .. 'active', unpack(leases)) end
  if #unstarted > 0 then redis.call('ZADD', P .. 'unstarted', unpack(unstarted)) end
  if #cancelled > 0 then redis.call('ZADD', P .. 'state:cancelled', unpack(cancelled)) end
  if n > 0 and redis.call('ZCARD', P .. 'passes') > 0 then
    wake() -- more work: let the next idle worker in
  end
end

-- What the next call should declare: the keys this one missed, the lanes next in turn
-- with their first jobs (a lane's jobs are read only once it is declared), and the jobs
-- that fall due or whose lease runs out within a second (their accounts' keys follow
-- once their records are declared).
local hints, hinted = {}, {}
local function hint(key)
  if not hinted[key] then
    hinted[key] = true
    hints[#hints + 1] = key
  end
end
for _, k in ipairs(needs or {}) do hint(k) end
for _, k in ipairs(carry) do hint(k) end
for _, head in pairs(lane_next) do
  for i = 1, #head, 2 do hint(P .. 'job:' .. head[i]) end
end
-- Short of a full batch (no backlog here, or one this call could not reach): the lanes
-- next in turn and the work falling due soon too. A full batch's next call finds its
-- lanes among those it served.
if not ALL_DECLARED and max > 0 and #jobs / 3 < max then
  local budget = 2 * max + 8
  local next_lanes = redis.call('ZRANGE', P .. 'passes', 0, math.min(budget, 64) - 1)
  local per_lane = math.max(2, math.ceil(budget / math.max(#next_lanes, 1)))
  for _, acct in ipairs(next_lanes) do
    local lane = lane_key(acct)
    hint(lane)
    if acct ~= '' then hint(P .. 'hold:' .. acct) end
    if declared(lane) and budget > 0 then
      for _, id in ipairs(redis.call('ZRANGE', lane, 0, math.min(per_lane, budget) - 1)) do
        hint(P .. 'job:' .. id)
        budget = budget - 1
      end
    end
  end
end
if not ALL_DECLARED and (#jobs / 3 < max or max == 0) then
  for _, index in ipairs({'scheduled', 'active'}) do
    for _, id in ipairs(redis.call('ZRANGE', P .. index, '-inf', now + 1000, 'BYSCORE', 'LIMIT', 0, 20)) do
      hint(P .. 'job:' .. id)
      hint(P .. 'attempts:' .. id)
    end
  end
end

-- How long the caller may sleep: asked for when it got fewer jobs than it wanted (then
-- the lanes it may take from are empty, and it waits for a wake-up rather than asking
-- again at once).
local wait = -1
if #jobs / 3 < max or #jobs == 0 then
  local nxt = redis.call('ZRANGE', P .. 'scheduled', 0, 0, 'WITHSCORES')
  if nxt[2] then wait = math.max(0, tonumber(nxt[2]) - now) end
  local lease = redis.call('ZRANGE', P .. 'active', 0, 0, 'WITHSCORES')
  if lease[2] then
    local w = math.max(0, tonumber(lease[2]) - now)
    if wait < 0 or w < wait then wait = w end
  end
end
if needs or turns_ran_out then wait = 0 end
if hold_left > 0 and (wait < 0 or hold_left < wait) then
  -- held after a restart: ask again when the hold ends
  wait = hold_left
end
return {jobs, wait, hints, needs and 1 or 0}
