-- Why a job that is neither running nor finished has not started (waiting_of.lua).
-- ARGV: prefix, id, account (the one its KEYS were named for; absent from a caller of
-- the previous release) -> {} (missing, started, terminal, or of another account) or
-- {reason, until_ms|'', detail_json}
if ARGV[3] and (redis.call('HGET', P .. 'job:' .. ARGV[2], 'acct') or '') ~= ARGV[3] then return {} end
local reason, due, detail = waiting_of(ARGV[2])
if not reason then return {} end
return {reason, due, detail}
