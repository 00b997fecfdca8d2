-- cancel_delete: undo a begin_delete ('delete' or 'unknown') before the inner object was
-- touched, because rows in the database still hold the name (the delete guard).
--
-- KEYS[1] record   KEYS[2] claim (the decision's lease)   KEYS[3] tombstone
-- KEYS[4] content map of the digest
-- ARGV[1] token   ARGV[2] refs   ARGV[3] name   ARGV[4] digest ('' for none)   ARGV[5] size
-- Replies: 1 when the delete was cancelled, 0 when the token no longer holds the name.
local f = rec_hmget(KEYS[1], 'state', 'token')
if f[1] == 'deleting' and f[2] == ARGV[1] then
  rec_hset(KEYS[1], 'state', 'live', 'refs', ARGV[2])
  rec_hdel(KEYS[1], 'token', 'lease')
  map_set(KEYS[4], ARGV[3], true)
elseif not f[1] then
  local t = redis.call('HMGET', KEYS[3], 'state', 'token')
  if t[1] ~= 'deleting' or t[2] ~= ARGV[1] then
    return 0
  end
  redis.call('DEL', KEYS[3])
  if ARGV[4] ~= '' then
    rec_hset(KEYS[1], 'digest', ARGV[4], 'refs', ARGV[2], 'state', 'live',
               'size', ARGV[5], 'nlen', string.len(ARGV[3]))
    map_set(KEYS[4], ARGV[3], true)
  end
else
  return 0
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
