-- Why a job that is neither running nor finished has not started (waiting_of.lua).
-- ARGV: prefix, id -> {} (missing, started or terminal) or {reason, until_ms|'', detail_json}
local reason, due, detail = waiting_of(ARGV[2])
if not reason then return {} end
return {reason, due, detail}
