-- abort_replace.
--
-- KEYS[1] record of the name
-- ARGV[1] token   ARGV[2] inner deleted ('1' or '0')   ARGV[3] map key prefix
-- ARGV[4] name
-- Replies: 1 if the token's replace was undone, else 0.
local f = rec_hmget(KEYS[1], 'state', 'token', 'digest', 'refs')
if f[1] ~= 'replacing' or f[2] ~= ARGV[1] then
  return 0
end
if ARGV[2] == '1' then
  rec_del(KEYS[1])
elseif f[4] == '0' then
  -- We had taken over a dead deleter's record: no reference comes back, it is an
  -- interrupted deletion again, which the next delete() of the name completes.
  rec_hset(KEYS[1], 'state', 'deleting')
  rec_hdel(KEYS[1], 'token', 'lease')
else
  rec_hset(KEYS[1], 'state', 'live')
  rec_hdel(KEYS[1], 'token', 'lease')
  map_set(ARGV[3] .. f[3], ARGV[4], true)
end
return 1
