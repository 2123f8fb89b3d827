-- One page of an index, newest (highest score) first, resuming after a cursor.
-- KEYS[1]: the index ZSET; with a filter, KEYS[2..] the records of the entries the
-- caller read ahead from the same position. ARGV: prefix, max_score ('+inf' or cursor
-- score), cursor id ('' for none), limit, state filter ('' none), account filter (''
-- none), scan cap, last error's class filter ('' none), the score and id of the last
-- entry read ahead ('' when that read reached the index's end), dead-letter group
-- filter ('' none: the job's error signature).
-- -> {{id, score, ...}, last score, last id, more, walked}: `more` is 1 when the index
-- goes on; `walked`: how many entries the page passed through (with a filter, each one's
-- record read), which the API charges to the key's read budget.
-- The page reads from the first entry after the cursor (`rank_after_cursor`).
-- An entry whose record was not read ahead is passed over when it came in since that
-- read (the page is as of the read), and ends the page when it lies beyond it.
local max_score, cursor_id, limit = ARGV[2], ARGV[3], tonumber(ARGV[4])
local want_state, want_acct, cap = ARGV[5], ARGV[6], tonumber(ARGV[7])
local want_class = ARGV[8] or ''
local class_mark = '"class":"' .. want_class .. '"'
local end_score, end_id = tonumber(ARGV[9] or ''), ARGV[10] or ''
local want_group = ARGV[11] or ''
local filtered = want_state ~= '' or want_acct ~= '' or want_class ~= '' or want_group ~= ''
local function beyond_read(score, id)
  if not end_score then return false end
  local s = tonumber(score)
  return s < end_score or (s == end_score and lex_before(id, end_id))
end
local out = {}
local last_score, last_id = '', ''
local scanned, more = 0, 0
local batch_size = 256
local from = rank_after_cursor(KEYS[1], max_score, cursor_id)
while true do
  local batch = redis.call('ZRANGE', KEYS[1], from, from + batch_size - 1, 'REV', 'WITHSCORES')
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    local id, score = batch[i], batch[i + 1]
    if #out >= limit * 2 or scanned >= cap then
      more = 1
      break
    end
    local keep = true
    local key = P .. 'job:' .. id
    if filtered and not declared(key) and beyond_read(score, id) then
      more = 1
      break
    end
    scanned = scanned + 1
    last_score, last_id = score, id
    if filtered and not declared(key) then
      keep = false
    elseif filtered then
      local f = redis.call('HMGET', key, 'st', 'acct', 'er', 'sg')
      if want_state ~= '' and f[1] ~= want_state then keep = false end
      if want_acct ~= '' and f[2] ~= want_acct then keep = false end
      if want_class ~= '' and not (f[3] and string.find(f[3], class_mark, 1, true)) then keep = false end
      if want_group ~= '' and f[4] ~= want_group then keep = false end
    end
    if keep then
      out[#out + 1] = id
      out[#out + 1] = score
    end
  end
  if more == 1 or #batch < batch_size * 2 then break end
  from = from + batch_size
end
return {out, last_score, last_id, more, scanned}
