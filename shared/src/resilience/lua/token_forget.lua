-- Delete the cached access token KEYS[1] only if it is still the one whose fingerprint
-- is ARGV[1] (the stored value is "<fingerprint>.<sealed token>"): another worker may
-- already have stored a fresh token.
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. '.' then
  return redis.call('DEL', KEYS[1])
end
return 0
