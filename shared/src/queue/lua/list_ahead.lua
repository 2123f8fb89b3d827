-- The entries a filtered page of an index may walk, read ahead so the page's script can
-- declare their records: up to ARGV[4] entries, newest first, from the first one after
-- the cursor (`rank_after_cursor`, common.lua: before the API audit of 2026-12-07,
-- second, a read-ahead from the cursor's score took in the ties already shown, and past
-- a page's read-ahead of them a listing ended early).
-- KEYS[1]: the index. ARGV: prefix, max_score ('+inf' or the cursor's score), cursor id
-- ('' for none), how many -> {id, score, id, score, ...}
local index, max_score, cursor_id, n = KEYS[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local from = rank_after_cursor(index, max_score, cursor_id)
if n <= 0 then return {} end
return redis.call('ZRANGE', index, from, from + n - 1, 'REV', 'WITHSCORES')
