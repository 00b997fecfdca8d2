-- abort_replace.
--
-- KEYS[1] record of the name
-- ARGV[1] token   ARGV[2] inner deleted ('1' or '0')   ARGV[3] map key prefix
-- ARGV[4] name
-- Replies: 1 if the token's replace was undone, else 0.
local f = redis.call('HMGET', KEYS[1], 'state', 'token', 'digest', 'refs')
if f[1] ~= 'replacing' or f[2] ~= ARGV[1] then
  return 0
end
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
elseif f[4] == '0' then
  -- We had taken over a dead deleter's record: no reference comes back, it is an
  -- interrupted deletion again, which the next delete() of the name completes.
  redis.call('HSET', KEYS[1], 'state', 'deleting')
  redis.call('HDEL', KEYS[1], 'token', 'lease')
else
  redis.call('HSET', KEYS[1], 'state', 'live')
  redis.call('HDEL', KEYS[1], 'token', 'lease')
  redis.call('SET', ARGV[3] .. f[3], ARGV[4], 'NX')
end
return 1
