-- One page of an index, newest (highest score) first, resuming after a cursor.
-- KEYS[1]: the index ZSET. ARGV: prefix, max_score ('+inf' or cursor score), cursor id
-- ('' for none), limit, state filter ('' none), account filter ('' none), scan cap,
-- last error's class filter ('' none).
-- -> {{id, score, ...}, last score, last id, more}: `more` is 1 when the index goes on.
local max_score, cursor_id, limit = ARGV[2], ARGV[3], tonumber(ARGV[4])
local want_state, want_acct, cap = ARGV[5], ARGV[6], tonumber(ARGV[7])
local want_class = ARGV[8] or ''
local class_mark = '"class":"' .. want_class .. '"'
local out = {}
local last_score, last_id = '', ''
local scanned, offset, more = 0, 0, 0
local batch_size = 256
while true do
  local batch = redis.call('ZRANGE', KEYS[1], max_score, '-inf', 'BYSCORE', 'REV', 'LIMIT', offset, batch_size, 'WITHSCORES')
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    local id, score = batch[i], batch[i + 1]
    if #out >= limit * 2 or scanned >= cap then
      more = 1
      break
    end
    if not (cursor_id ~= '' and score == max_score and id >= cursor_id) then
      scanned = scanned + 1
      last_score, last_id = score, id
      local keep = true
      if want_state ~= '' or want_acct ~= '' or want_class ~= '' then
        local f = redis.call('HMGET', P .. 'job:' .. id, 'st', 'acct', 'er')
        if want_state ~= '' and f[1] ~= want_state then keep = false end
        if want_acct ~= '' and f[2] ~= want_acct then keep = false end
        if want_class ~= '' and not (f[3] and string.find(f[3], class_mark, 1, true)) then keep = false end
      end
      if keep then
        out[#out + 1] = id
        out[#out + 1] = score
      end
    end
  end
  if more == 1 or #batch < batch_size * 2 then break end
  offset = offset + batch_size
end
return {out, last_score, last_id, more}
