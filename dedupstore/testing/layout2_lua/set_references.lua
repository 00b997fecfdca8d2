-- set_references (inside the tally wrapper of redis.py: the last key is the counters).
--
-- KEYS[1] record of the name
-- ARGV[1] references the rows hold   ARGV[2] grace (seconds)
--
-- Replies: 'raised', 'lowered', 'unchanged', 'recent' (a lower count refused: the record
-- changed within the grace, so a save whose row is not committed yet may hold it),
-- 'busy' (not live: a save, replace or delete is under way), 'absent'.
local f = redis.call('HMGET', KEYS[1], 'state', 'refs', 't')
if not f[1] then
  return 'absent'
end
if f[1] ~= 'live' then
  return 'busy'
end
local want, have = tonumber(ARGV[1]), tonumber(f[2])
if want == have then
  return 'unchanged'
end
if want < have then
  local now = redis.call('TIME')
  local age = tonumber(now[1]) + tonumber(now[2]) / 1000000 - (tonumber(f[3]) or 0)
  if age < tonumber(ARGV[2]) then
    return 'recent'
  end
end
redis.call('HSET', KEYS[1], 'refs', want)
if want > have then
  return 'raised'
end
return 'lowered'
