-- Delete KEYS[1] only if it still holds ARGV[1] (our lock, or the token that got a 401).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
