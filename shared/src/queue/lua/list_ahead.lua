-- The entries a filtered page of an index may walk, read ahead so the page's script can
-- declare their records: up to ARGV[4] entries, newest first, from the first one after
-- the cursor. The cursor's ties already shown (its score, ids from its own up: the
-- order of a reverse range) are passed over by their count, found by halving the tie
-- range, whether the cursor's own entry is still there or not (found by the API audit
-- of 2026-12-07, second: a read-ahead from the cursor's score took in the ties already
-- shown, and past a page's read-ahead of them a listing ended early).
-- KEYS[1]: the index. ARGV: prefix, max_score ('+inf' or the cursor's score), cursor id
-- ('' for none), how many -> {id, score, id, score, ...}
local index, max_score, cursor_id, n = KEYS[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local from = 0
if cursor_id ~= '' then
  local higher = redis.call('ZCOUNT', index, '(' .. max_score, '+inf')
  local lo, hi = higher, higher + redis.call('ZCOUNT', index, max_score, max_score)
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if not lex_before(redis.call('ZRANGE', index, mid, mid, 'REV')[1], cursor_id) then lo = mid + 1 else hi = mid end
  end
  from = lo - higher
end
return redis.call('ZRANGE', index, max_score, '-inf', 'BYSCORE', 'REV', 'LIMIT', from, n, 'WITHSCORES')
