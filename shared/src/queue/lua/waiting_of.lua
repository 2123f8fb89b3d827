-- Why a job that is neither running nor finished has not started: one bounded read of
-- the job, its lane and its account (docs/architecture.md, "Waiting"). Shared by
-- waiting.lua and enqueue.lua (which answers it with a submit).
-- waiting_of(id, known) -> nil (missing, started or terminal) or reason, until_ms|'', detail_json
-- known (optional): {st, acct, due} of a job this call just stored, instead of reading it
-- reason: scheduled | retry_backoff | rate_limit | quota_cooldown | breaker_open |
--         account_busy | queue_paused | no_worker | restart_hold | queued |
--         prefetched (leased, not yet started)
--
-- Every live worker calls each queue it serves every heartbeat (a fetch, a renewal or a
-- beat: note_served sets `seen`), so a queue Redis has not served for NO_WORKER_MS has
-- no live worker: a job that could start waits for one to come (`no_worker`), and one
-- whose wait has ended says so in `then`.
local NO_WORKER_MS = 15000
-- nil while a worker serves the queue; else {last_served_ms} (cjson null: never served)
local function unserved()
  local seen = tonumber(redis.call('GET', P .. 'seen'))
  if seen and now_ms() - seen < NO_WORKER_MS then return nil end
  return {last_served_ms = seen or cjson.null}
end
local function waiting_of(id, known)
  local f
  if known then
    f = {known.st, known.acct, known.due, false, false}
  else
    f = redis.call('HMGET', P .. 'job:' .. id, 'st', 'acct', 'ra', 'er', 'w')
  end
  local st = f[1]
  -- (an enqueue's answer for a job already there does not declare the leases)
  if st == 'running' and declared(P .. 'active') then
    -- Its lease ran out and no worker serves the queue to reclaim it (its worker died
    -- with the others): it waits for one, as a queued job does (found by the API audit
    -- of 2026-12-07, third: it showed `running`, or `prefetched`, for as long).
    local lease_end = tonumber(redis.call('ZSCORE', P .. 'active', id))
    local nobody = lease_end and lease_end < now_ms() and unserved()
    if nobody then
      nobody.lease_ended_ms = lease_end
      -- (a lease whose run never started: no start to show, as `prefetched`)
      if redis.call('ZSCORE', P .. 'unstarted', id) then nobody.unstarted = true end
      return 'no_worker', '', cjson.encode(nobody)
    end
  end
  if st == 'running' and redis.call('ZSCORE', P .. 'unstarted', id) then
    -- leased ahead by a worker that has not started it yet (prefetch)
    return 'prefetched', '', cjson.encode({worker = f[5] or ''})
  end
  if not st or st == 'running' or is_terminal(st) then return nil end
  local acct = f[2] or ''
  local due = f[3] or ''
  -- A wait with an end in a paused queue ends in the pause: it says so (`then`).
  local paused = (st == 'retrying' or st == 'scheduled') and redis.call('EXISTS', P .. 'paused') == 1
  -- A wait that has ended in a queue no worker serves: it waits for one now. In one
  -- served, it joins its lane at the next sweep (within a few hundred ms): `then` says
  -- so, not an `until` in the past alone (found by the fairness audit of 2026-12-07,
  -- third).
  local ended = not paused and (st == 'retrying' or st == 'scheduled')
    and tonumber(due) and tonumber(due) <= now_ms()
  local unserved_due = ended and unserved()
  if st == 'retrying' then
    if unserved_due then
      unserved_due['then'] = 'no_worker'
      return 'retry_backoff', due, cjson.encode(unserved_due)
    end
    if ended then return 'retry_backoff', due, '{"then":"queued"}' end
    return 'retry_backoff', due, paused and '{"then":"queue_paused"}' or '{}'
  end
  if st == 'scheduled' then
    -- A job parked by its run (a snooze) names the guard it waits for in its error.
    local reason, m = park_reason(f[4])
    local detail = {}
    if reason then
      -- an SP-API operation name (camelCase) before a colon
      detail = {message = m, operation = string.match(m, '(%l+%u%a*): ')}
    else
      reason = 'scheduled'
      -- a run interrupted by an outage (or that handed back its turn) says so
      local why = interrupted_message(f[4])
      if why then detail = {message = why, class = 'interrupted'} end
    end
    if paused then detail['then'] = 'queue_paused' end
    if unserved_due then
      detail['then'], detail.last_served_ms = 'no_worker', unserved_due.last_served_ms
    elseif ended then
      detail['then'] = 'queued'
    end
    return reason, due, next(detail) ~= nil and cjson.encode(detail) or '{}'
  end
  if redis.call('EXISTS', P .. 'paused') == 1 then
    return 'queue_paused', '', '{}'
  end
  local nobody = unserved()
  if nobody then return 'no_worker', '', cjson.encode(nobody) end
  -- Redis restarted and may have lost leases: nothing is leased until every live holder
  -- has found its lease gone (fetch.lua), a lease and a second after it was seen.
  local restarted = tonumber(redis.call('GET', P .. 'restarted'))
  if restarted then
    return 'restart_hold', '', '{"restart_seen_ms":' .. ms_str(restarted) .. '}'
  end
  local cap = redis.call('HGET', P .. 'blocked', acct)
  if cap then
    local runs = redis.call('SRANDMEMBER', P .. 'hold:' .. acct, 100)
    local list = '[]'
    if #runs > 0 then list = '["' .. table.concat(runs, '","') .. '"]' end
    return 'account_busy', '', '{"cap":' .. tonumber(cap) .. ',"running":' .. list .. '}'
  end
  -- Accounts take turns, so the jobs ahead are about: this lane's jobs ahead of it times
  -- the lanes waiting, plus the lanes whose turn comes before this one's.
  local lanes = redis.call('ZCARD', P .. 'passes')
  local in_lane = redis.call('ZRANK', lane_key(acct), id) or 0
  local lane_rank = redis.call('ZRANK', P .. 'passes', acct) or lanes
  local position = in_lane * math.max(lanes, 1) + lane_rank
  -- `ahead_in_account` is the account's own part, all a key limited to accounts is shown
  return 'queued', '', '{"position":' .. position .. ',"accounts_waiting":' .. lanes .. ',"ahead_in_account":' .. in_lane .. '}'
end
